// Command prometheus is a login service whose mpauthx metrics Prometheus
// scrapes at /metrics: the wiring of docs/operations.md, run by
// prometheus_test.go. It reads WECHAT_APPID, WECHAT_APP_SECRET,
// REDIS_ADDR and USERS_DB from the environment and listens on
// 127.0.0.1:8080 (-listen):
//
//	WECHAT_APPID=wx... WECHAT_APP_SECRET=... go run . -listen 127.0.0.1:8080
//	curl -s 127.0.0.1:8080/metrics | grep mpauthx_
//
// The module is nested so that the OpenTelemetry SDK, its Prometheus
// exporter and the Prometheus client stay out of mpauthx's go.mod: the
// library depends on the OpenTelemetry API alone.
package main

import (
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/seeda8e74ca0/mpauthx"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve /login, /me and /metrics on")
	flag.Parse()

	mp, metrics, err := prometheusMetrics()
	if err != nil {
		log.Fatal(err)
	}
	db, err := mpauthx.OpenSQLite(envOr("USERS_DB", "users.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	c, err := mpauthx.New(mpauthx.Config{
		AppID:         os.Getenv("WECHAT_APPID"),
		AppSecret:     os.Getenv("WECHAT_APP_SECRET"),
		Sku:           "myapp",
		RedisAddr:     os.Getenv("REDIS_ADDR"),
		DB:            db,
		MeterProvider: mp,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	log.Fatal(http.ListenAndServe(*listen, routes(c, metrics)))
}

// prometheusMetrics returns an OpenTelemetry MeterProvider for
// mpauthx.Config.MeterProvider and the handler that serves its metrics to
// Prometheus (mpauthx_logins_total, mpauthx_checks_total, ...).
func prometheusMetrics() (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// routes serves the login, a protected page and the metrics.
func routes(c *mpauthx.Client, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Code string `json:"code"`
		}
		json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req)
		res, err := c.AuthorizeCode(r.Context(), req.Code) // an empty code is StatusRequiredParamsMissing
		writeJSON(w, mpauthx.HTTPStatus(err), res)
	})
	mux.Handle("GET /me", c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		userID, _ := mpauthx.UserIDFromContext(r.Context())
		writeJSON(w, http.StatusOK, map[string]string{"user": userID})
	})))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
