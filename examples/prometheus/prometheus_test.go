package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// newClient returns a Client of the fake WeChat wx on miniredis and a
// temporary SQLite file, with cfg's changes.
func newClient(t testing.TB, wx *mpauthxtest.Server, tweak func(*mpauthx.Config)) *mpauthx.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: miniredis.RunT(t).Addr()})
	t.Cleanup(func() { rdb.Close() })
	db, err := mpauthx.OpenSQLite(filepath.Join(t.TempDir(), "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := mpauthx.Config{AppID: wx.AppID, AppSecret: wx.AppSecret, APIBase: wx.URL, Sku: "myapp", Redis: rdb, DB: db}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := mpauthx.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPrometheus runs the wiring of docs/operations.md: logins and
// checks through the service's routes show in the Prometheus text
// format that /metrics serves, with the values of Client.Stats.
func TestPrometheus(t *testing.T) {
	wx := mpauthxtest.NewServer("wx-prom-app", "prom-app-secret")
	defer wx.Close()
	mp, metrics, err := prometheusMetrics()
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Shutdown(t.Context())
	c := newClient(t, wx, func(cfg *mpauthx.Config) { cfg.MeterProvider = mp })
	srv := httptest.NewServer(routes(c, metrics))
	defer srv.Close()

	wx.AddUser(mpauthxtest.User{OpenID: "o-prom"})
	post := func(code string, want int) string {
		t.Helper()
		resp, err := http.Post(srv.URL+"/login", "application/json", strings.NewReader(`{"code":"`+code+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("POST /login: %d %s, want %d", resp.StatusCode, b, want)
		}
		return string(b)
	}
	body := post(wx.Code("o-prom"), 200)
	token := regexp.MustCompile(`"response":"([^"]+)"`).FindStringSubmatch(body)[1]
	post("no-such-code", 401)
	post("", 400)
	for range 3 {
		req, _ := http.NewRequest("GET", srv.URL+"/me", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /me: %d", resp.StatusCode)
		}
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	text := string(b)
	st := c.Stats()
	if st.Logins[mpauthx.StatusSuccess] != 1 || st.Checks != 3 || st.PlatformCalls != 2 || st.PlatformErrors != 1 {
		t.Fatalf("Stats %+v", st)
	}
	for _, want := range []struct {
		name  string
		attrs []string
		value string
	}{
		{"mpauthx_logins_total", []string{`mpauthx_status_code="1"`, `mpauthx_app_id="wx-prom-app"`, `mpauthx_sku="myapp"`, `mpauthx_platform="wechat"`}, "1"},
		{"mpauthx_logins_total", []string{`mpauthx_status_code="6008"`}, "1"},
		{"mpauthx_logins_total", []string{`mpauthx_status_code="6001"`}, "1"},
		{"mpauthx_checks_total", []string{`mpauthx_sku="myapp"`}, "3"},
		{"mpauthx_checks_cache_hits_total", nil, "0"},
		{"mpauthx_checks_errors_total", nil, "0"},
		{"mpauthx_platform_calls_total", nil, "2"},
		{"mpauthx_platform_errors_total", nil, "1"},
		{"mpauthx_access_token_renewals_total", nil, "0"},
		{"mpauthx_access_token_forced_refreshes_total", nil, "0"},
	} {
		if !hasSample(text, want.name, want.attrs, want.value) {
			t.Errorf("no sample %s{%s} %s in:\n%s", want.name, strings.Join(want.attrs, ","), want.value, grepLines(text, "mpauthx_"))
		}
	}
	if strings.Contains(text, token) || strings.Contains(text, wx.AppSecret) || strings.Contains(text, "o-prom") {
		t.Error("/metrics shows a token, the app secret or a user's ID")
	}
}

// hasSample reports whether the Prometheus text holds a sample of name
// with every label of attrs and the value.
func hasSample(text, name string, attrs []string, value string) bool {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.HasSuffix(line, "} "+value) {
			continue
		}
		ok := true
		for _, a := range attrs {
			ok = ok && strings.Contains(line, a)
		}
		if ok {
			return true
		}
	}
	return false
}

// grepLines returns the lines of text holding s.
func grepLines(text, s string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
