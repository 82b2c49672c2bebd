package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/seeda8e74ca0/mpauthx"
	"github.com/seeda8e74ca0/mpauthx/mpauthxtest"
)

// The tests that need the OpenTelemetry SDK live in this nested module,
// so that mpauthx's own go.mod holds the API alone.

// echoProxy fails every request with an error quoting the whole URL, its
// query (the app secret, the login code, the access token) included.
type echoProxy struct{}

func (echoProxy) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("proxy refused %s (query %q)", r.URL, r.URL.Query())
}

// TestOpenTelemetry: with an SDK behind Config.TracerProvider and
// Config.MeterProvider, logins and platform calls make the documented
// spans (a platform call nested in its login), the metrics hold the
// values of Stats, and no span or metric holds a secret, a token, a
// code, a phone number, a session key or a user's ID, in any attribute,
// status, event or name.
func TestOpenTelemetry(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	const secret = "otel-app-secret-value"
	wx := mpauthxtest.NewServer("wx-otel-app", secret)
	defer wx.Close()
	var secrets []string // what no span or metric may hold
	hide := func(v ...string) {
		for _, s := range v {
			secrets = append(secrets, s, url.QueryEscape(s))
		}
	}
	hide(secret)
	sessionKey := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	u := wx.AddUser(mpauthxtest.User{OpenID: "o-otel-person", UnionID: "u-otel-person", SessionKey: sessionKey,
		Phone: "13912345678", CountryCode: "86", NickName: "Nick-Otel"})
	hide(u.OpenID, u.UnionID, sessionKey, u.Phone, u.NickName)
	setup := func(cfg *mpauthx.Config) { cfg.TracerProvider, cfg.MeterProvider = tp, mp }
	c := newClient(t, wx, setup)
	ctx := context.Background()
	code := func() string { s := wx.Code(u.OpenID); hide(s); return s }
	phoneCode := func() string { s := wx.PhoneCode(u.OpenID); hide(s); return s }
	token := func(res mpauthx.Result, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		hide(res.Response, res.Response[strings.LastIndexByte(res.Response, '|')+1:])
	}

	data, iv := wx.UserInfo(u.OpenID)
	hide(data, iv)
	token(c.Authorize(ctx, code(), data, iv))
	if _, err := c.AuthorizeCode(ctx, "o-otel-bad-code"); err == nil {
		t.Fatal("an unknown code logged in")
	}
	hide("o-otel-bad-code")
	token(c.AuthorizePhone(ctx, code(), phoneCode()))
	hide(wx.AccessToken())
	wx.ExpireAccessToken()
	if _, err := c.PhoneNumber(ctx, phoneCode()); err != nil {
		t.Fatal(err)
	}
	hide(wx.AccessToken())
	wx.HandleAPI("/wxa/msg_sec_check", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"errcode":87014,"errmsg":"risky content"}`)
	})
	if err := c.CallAPI(ctx, "POST", "/wxa/msg_sec_check?openid="+u.OpenID, map[string]string{"content": "x"}, nil); err == nil {
		t.Fatal("no error for errcode 87014")
	}
	for _, tok := range []string{"junk", "o-otel-person|myapp|ABCDEFGHIJKLMNOPQRSTUVWXYZ"} {
		c.IsTokenValid(ctx, tok)
	}
	// A proxy whose errors quote the request, secret and code included.
	proxied := newClient(t, wx, func(cfg *mpauthx.Config) {
		setup(cfg)
		cfg.Sku = "proxied"
		cfg.HTTPClient = &http.Client{Transport: echoProxy{}}
	})
	if _, err := proxied.AuthorizeCode(ctx, code()); err == nil {
		t.Fatal("logged in through a failing proxy")
	}

	// The spans.
	got := spans.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range got {
		byName[s.Name] = append(byName[s.Name], s)
		byID[s.SpanContext.SpanID()] = s
	}
	attr := func(s tracetest.SpanStub, key string) string {
		for _, kv := range s.Attributes {
			if string(kv.Key) == key {
				return kv.Value.String()
			}
		}
		return ""
	}
	parent := func(s tracetest.SpanStub) string { return byID[s.Parent.SpanID()].Name }
	for _, want := range []struct {
		name, parent, statusCode, errCode string
		failed                            bool
		count                             int
	}{
		{"mpauthx.Authorize", "", "1", "", false, 1},
		{"mpauthx.AuthorizeCode", "", "6008", "", true, 2},
		{"mpauthx.AuthorizePhone", "", "1", "", false, 1},
		{"GET /sns/jscode2session", "mpauthx.Authorize", "", "", false, 1},
		{"POST /wxa/business/getuserphonenumber", "mpauthx.AuthorizePhone", "", "", false, 1},
		{"POST /wxa/business/getuserphonenumber", "", "", "40001", true, 1}, // PhoneNumber's first try
		{"POST /cgi-bin/stable_token", "", "", "", false, 2},                // the shared refreshes belong to no caller
		{"POST /wxa/msg_sec_check", "", "", "87014", true, 1},
	} {
		n := 0
		for _, s := range byName[want.name] {
			if parent(s) != want.parent || (want.errCode != "" && attr(s, "mpauthx.platform.error_code") != want.errCode) {
				continue
			}
			n++
			if (s.Status.Code == codes.Error) != want.failed {
				t.Errorf("span %s: status %v", want.name, s.Status)
			}
			if want.statusCode != "" && attr(s, "mpauthx.status_code") != want.statusCode && !(want.failed && attr(s, "mpauthx.status_code") == "6006") {
				t.Errorf("span %s: mpauthx.status_code %q, want %s", want.name, attr(s, "mpauthx.status_code"), want.statusCode)
			}
			if strings.Contains(want.name, "/") && (s.SpanKind != trace.SpanKindClient || attr(s, "server.address") != "127.0.0.1" || attr(s, "mpauthx.platform") != "wechat") {
				t.Errorf("span %s: kind %v, attributes %v", want.name, s.SpanKind, s.Attributes)
			}
		}
		if n != want.count {
			t.Errorf("%d spans %s under %q (errcode %q), want %d; spans: %v", n, want.name, want.parent, want.errCode, want.count, names(got))
		}
	}
	for _, s := range byName["mpauthx.AuthorizeCode"] {
		if s.Status.Description == "" || attr(s, "mpauthx.app_id") != "wx-otel-app" || attr(s, "mpauthx.sku") == "" {
			t.Errorf("failed login span: %+v", s)
		}
	}

	// The metrics: the values of Stats.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	sums := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Errorf("%s is not a monotonic int64 sum: %T", m.Name, m.Data)
				continue
			}
			for _, dp := range sum.DataPoints {
				if sku, _ := dp.Attributes.Value("mpauthx.sku"); sku.AsString() != "myapp" {
					continue // the proxied Client's are checked for secrets only
				}
				key := m.Name
				if sc, ok := dp.Attributes.Value("mpauthx.status_code"); ok {
					key += "/" + sc.String()
				}
				sums[key] += dp.Value
			}
		}
	}
	st := c.Stats()
	want := map[string]uint64{
		"mpauthx.checks": st.Checks, "mpauthx.checks.cache_hits": st.CacheHits, "mpauthx.checks.errors": st.CheckErrors,
		"mpauthx.platform.calls": st.PlatformCalls, "mpauthx.platform.errors": st.PlatformErrors,
		"mpauthx.access_token.renewals": st.AccessTokenRenewals, "mpauthx.access_token.forced_refreshes": st.ForcedRefreshes,
	}
	for code, n := range st.Logins {
		want[fmt.Sprint("mpauthx.logins/", int(code))] = n
	}
	if st.Logins[mpauthx.StatusSuccess] != 2 || st.Logins[mpauthx.StatusSessionKeyRequestError] != 1 || st.Checks != 2 || st.ForcedRefreshes != 1 {
		t.Errorf("Stats %+v", st)
	}
	for k, v := range want {
		if sums[k] != int64(v) {
			t.Errorf("metric %s = %d, Stats says %d", k, sums[k], v)
		}
	}
	if len(sums) != len(want) {
		t.Errorf("metrics %v, want %v", sums, want)
	}

	// No secret anywhere.
	var texts []string
	for _, s := range got {
		texts = append(texts, "span "+s.Name+" "+s.Status.Description)
		for _, kv := range s.Attributes {
			texts = append(texts, s.Name+" "+string(kv.Key)+"="+kv.Value.String())
		}
		for _, ev := range s.Events {
			texts = append(texts, s.Name+" event "+ev.Name)
			for _, kv := range ev.Attributes {
				texts = append(texts, s.Name+" event "+string(kv.Key)+"="+kv.Value.String())
			}
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				texts = append(texts, m.Name+" "+m.Description+" "+dp.Attributes.Encoded(attribute.DefaultEncoder()))
			}
		}
	}
	for _, text := range texts {
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("%q holds %q", text, s)
			}
		}
	}
	var failed *mpauthx.Error
	if _, err := proxied.AuthorizeCode(ctx, code()); !errors.As(err, &failed) {
		t.Errorf("the proxied login: %v", err)
	}
}

func names(spans tracetest.SpanStubs) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name)
	}
	return n
}
