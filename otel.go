package mpauthx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// OpenTelemetry, through its API modules only: the application picks the
// SDK and the exporters (docs/operations.md wires Prometheus).
//
// Spans: one per login (Authorize, AuthorizeCode, AuthorizePhone), and
// one per HTTP request to the platform, nested in the login's when there
// is one. Metrics: the Stats counters, as observable counters read when
// the SDK collects, so that a token check records nothing.
//
// No attribute, status or event holds a secret: not the app secret, a
// token, an access token, a login or phone code, a phone number, a
// session key, nor a user's ID. A platform call's span has the URL's path
// but never its query (which holds the app secret or the access token),
// and a failed request's status names the error's type, never its text
// (a *url.Error quotes the whole URL).

// instrumentationName names mpauthx's tracer and meter.
const instrumentationName = "github.com/seeda8e74ca0/mpauthx"

// Attribute keys of mpauthx's spans and metrics.
const (
	attrAppID      = attribute.Key("mpauthx.app_id")
	attrSku        = attribute.Key("mpauthx.sku")
	attrPlatform   = attribute.Key("mpauthx.platform")
	attrStatusCode = attribute.Key("mpauthx.status_code")
	attrErrCode    = attribute.Key("mpauthx.platform.error_code")
	attrErrorType  = attribute.Key("error.type")
)

// observer is a Client's OpenTelemetry.
type observer struct {
	tracer   trace.Tracer
	attrs    []attribute.KeyValue // the Client's: app, Sku, platform
	platform attribute.KeyValue
	reg      metric.Registration // the metrics' callback; nil without one
	mu       sync.Mutex          // guards logins
	logins   map[StatusCode]attribute.Set
}

// observe sets up c's OpenTelemetry from cfg (nil providers mean the
// global ones) and wraps the HTTP client's transport, which counts and
// traces every request to the platform. New calls it once c.hc is set.
func (c *Client) observe(cfg Config) error {
	tp, mp := cfg.TracerProvider, cfg.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	c.obs = &observer{
		tracer: tp.Tracer(instrumentationName),
		attrs: []attribute.KeyValue{
			attrAppID.String(c.appID), attrSku.String(c.sku), attrPlatform.String(string(c.platform)),
		},
		platform: attrPlatform.String(string(c.platform)),
		logins:   make(map[StatusCode]attribute.Set),
	}
	base := c.hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.hc.Transport = &platformTransport{base: base, stats: c.stats, obs: c.obs}
	reg, err := c.registerMetrics(mp.Meter(instrumentationName))
	if err != nil {
		return fmt.Errorf("mpauthx: Config.MeterProvider: %w", err)
	}
	c.obs.reg = reg
	return nil
}

// close unregisters the metrics' callback.
func (o *observer) close() error {
	if o == nil || o.reg == nil {
		return nil
	}
	return o.reg.Unregister()
}

// trackLogin starts the span of the login called name, makes *ctx the
// span's context (so that the login's platform calls nest in it), and
// returns the function that counts the login's outcome in Stats and ends
// the span. A login method calls it first:
//
//	defer c.trackLogin(&ctx, "AuthorizeCode")(&err)
func (c *Client) trackLogin(ctx *context.Context, name string) func(*error) {
	var span trace.Span
	*ctx, span = c.obs.tracer.Start(*ctx, "mpauthx."+name,
		trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(c.obs.attrs...))
	return func(errp *error) {
		err := *errp
		code := Code(err)
		c.stats.login(code)
		if span.IsRecording() {
			span.SetAttributes(attrStatusCode.Int(int(code)))
			if err != nil {
				// The *Error's Message, which is safe to send to the
				// mini program; never the cause's text.
				span.SetAttributes(attrErrorType.String(strconv.Itoa(int(code))))
				span.SetStatus(codes.Error, ErrorResult(err).StatusMessage)
			}
		}
		span.End()
	}
}

// registerMetrics creates the observable counters of the Stats on m and
// registers the callback that reads them when the SDK collects.
func (c *Client) registerMetrics(m metric.Meter) (metric.Registration, error) {
	var errs []error
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		ctr, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return ctr
	}
	logins := counter("mpauthx.logins", "{login}",
		"Logins (Authorize, AuthorizeCode, AuthorizePhone) by outcome: mpauthx.status_code 1 for success, else the error's status code.")
	checks := counter("mpauthx.checks", "{check}", "IsTokenValid calls answered.")
	hits := counter("mpauthx.checks.cache_hits", "{check}", "IsTokenValid calls answered by the local cache.")
	checkErrs := counter("mpauthx.checks.errors", "{check}", "IsTokenValid calls that failed: Redis could not answer.")
	calls := counter("mpauthx.platform.calls", "{request}", "HTTP requests to WeChat (or the Client's platform).")
	callErrs := counter("mpauthx.platform.errors", "{request}", "HTTP requests to the platform that failed: no answer, a status other than 200, or an error code in the reply.")
	renewals := counter("mpauthx.access_token.renewals", "{token}", "Access tokens fetched from the platform by this Client.")
	forced := counter("mpauthx.access_token.forced_refreshes", "{token}", "Forced refreshes of the access token by this Client (WeChat allows 20 a day).")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	set := attribute.NewSet(slices.Clone(c.obs.attrs)...) // NewSet sorts its argument
	all := metric.WithAttributeSet(set)
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := c.Stats()
		for code, n := range st.Logins {
			o.ObserveInt64(logins, int64(n), metric.WithAttributeSet(c.obs.loginSet(code)))
		}
		o.ObserveInt64(checks, int64(st.Checks), all)
		o.ObserveInt64(hits, int64(st.CacheHits), all)
		o.ObserveInt64(checkErrs, int64(st.CheckErrors), all)
		o.ObserveInt64(calls, int64(st.PlatformCalls), all)
		o.ObserveInt64(callErrs, int64(st.PlatformErrors), all)
		o.ObserveInt64(renewals, int64(st.AccessTokenRenewals), all)
		o.ObserveInt64(forced, int64(st.ForcedRefreshes), all)
		return nil
	}, logins, checks, hits, checkErrs, calls, callErrs, renewals, forced)
}

// loginSet returns the attributes of the logins that ended with code.
func (o *observer) loginSet(code StatusCode) attribute.Set {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.logins[code]
	if !ok {
		s = attribute.NewSet(append(slices.Clone(o.attrs), attrStatusCode.Int(int(code)))...)
		o.logins[code] = s
	}
	return s
}

// platformTransport is the transport of the Client's HTTP client: it
// counts every request to the platform in Stats and traces it in a span
// of its own, whichever code makes the request.
type platformTransport struct {
	base  http.RoundTripper
	stats *counters
	obs   *observer
}

// RoundTrip counts, traces and sends req.
func (t *platformTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.stats.platformCall()
	ctx, span := t.obs.tracer.Start(req.Context(), req.Method+" "+req.URL.Path, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		host, port := req.URL.Hostname(), req.URL.Port()
		if port == "" {
			port = "443"
			if req.URL.Scheme == "http" {
				port = "80"
			}
		}
		span.SetAttributes(t.obs.platform,
			attribute.String("http.request.method", req.Method),
			attribute.String("server.address", host),
			attribute.String("url.path", req.URL.Path)) // never the query: it holds the secrets
		if p, err := strconv.Atoi(port); err == nil {
			span.SetAttributes(attribute.Int("server.port", p))
		}
		req = req.WithContext(ctx)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp == nil {
		t.stats.platformError()
		if err != nil {
			failed(span, errorType(err), "request failed")
		}
		span.End()
		return resp, err // http.Client reports a nil resp with a nil error
	}
	if resp.Body == nil { // allowed of a RoundTripper for an empty body
		resp.Body = http.NoBody
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	ok := resp.StatusCode == http.StatusOK
	if !ok {
		t.stats.platformError()
		failed(span, strconv.Itoa(resp.StatusCode), "HTTP "+strconv.Itoa(resp.StatusCode))
	}
	resp.Body = &platformBody{ReadCloser: resp.Body, t: t, span: span, sniff: ok}
	return resp, nil
}

// CloseIdleConnections closes the idle connections of the base
// transport, if it has any, so that http.Client.CloseIdleConnections
// still works.
func (t *platformTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// failed marks span as failed with an error type and a description that
// hold no secret.
func failed(span trace.Span, typ, desc string) {
	span.SetAttributes(attrErrorType.String(typ))
	span.SetStatus(codes.Error, desc)
}

// errorType names the kind of a transport error for a span, without its
// text (which may quote the URL, and the secrets in its query).
func errorType(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return fmt.Sprintf("%T", err)
}

// sniffMax is the largest reply whose body is read for the platform's
// error code: error replies are small, and a success is never counted
// as an error.
const sniffMax = 4 << 10

// platformBody is a platform reply's body: when its reader closes it,
// it counts an error code found in a small reply (the platforms answer
// errors with HTTP 200) and ends the request's span.
type platformBody struct {
	io.ReadCloser
	t     *platformTransport
	span  trace.Span
	sniff bool   // a 200: look for an error code
	head  []byte // the first bytes read, up to sniffMax+1
	once  sync.Once
}

// Read reads the body, keeping its first bytes.
func (b *platformBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.sniff && n > 0 && len(b.head) <= sniffMax {
		b.head = append(b.head, p[:min(n, sniffMax+1-len(b.head))]...)
	}
	return n, err
}

// Close closes the body, then counts its error code, if any, and ends
// the span.
func (b *platformBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() {
		if b.sniff && len(b.head) <= sniffMax {
			if code, bad := platformErrorCode(b.head); bad {
				b.t.stats.platformError()
				b.span.SetAttributes(attrErrCode.String(code))
				failed(b.span, code, "platform error code "+code)
			}
		}
		b.span.End()
	})
	return err
}

// platformErrorCode returns the error code of a platform's JSON reply, and
// whether it is one: WeChat's (and QQ's) errcode, Douyin's err_no or
// data.error_code, or the code of Alipay's error_response, when not 0.
// Anything else, JSON or not (an image, say), is no error.
func platformErrorCode(body []byte) (string, bool) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return "", false
	}
	var r struct {
		ErrCode       json.RawMessage `json:"errcode"`
		ErrNo         json.RawMessage `json:"err_no"`
		Data          json.RawMessage `json:"data"`
		ErrorResponse *struct {
			Code json.RawMessage `json:"code"`
		} `json:"error_response"`
	}
	if json.Unmarshal(body, &r) != nil {
		return "", false
	}
	if r.ErrorResponse != nil {
		code, _ := nonZero(r.ErrorResponse.Code)
		if code == "" {
			code = "error_response"
		}
		return code, true
	}
	for _, raw := range []json.RawMessage{r.ErrCode, r.ErrNo} {
		if code, bad := nonZero(raw); bad {
			return code, true
		}
	}
	if len(r.Data) > 0 && r.Data[0] == '{' {
		var d struct {
			ErrorCode json.RawMessage `json:"error_code"`
		}
		if json.Unmarshal(r.Data, &d) == nil {
			return nonZero(d.ErrorCode)
		}
	}
	return "", false
}

// nonZero returns a JSON number or string as text (at most 32 bytes,
// each byte that is not printable ASCII read as '_'), and whether it is
// an error code: present and other than 0.
func nonZero(raw json.RawMessage) (string, bool) {
	s := string(bytes.Trim(bytes.TrimSpace(raw), `"`))
	if s == "" || s == "0" || s == "null" {
		return s, false
	}
	if len(s) > 32 {
		s = s[:32]
	}
	// Printable ASCII only: the code becomes a span attribute, and a
	// byte of a cut rune (or any byte that is not UTF-8) would make an
	// OTLP exporter refuse the span.
	return strings.Map(func(r rune) rune {
		if r > ' ' && r < 0x7f {
			return r
		}
		return '_'
	}, s), true
}
