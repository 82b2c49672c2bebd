package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// envRedisAddr names the real Redis the tests also run against, as in the
// library's tests.
const envRedisAddr = "MPAUTHX_REDIS_ADDR"

// runTarget is a Redis a test runs the benchmark against. keysOf returns
// the keys of sku left in it after the run.
type runTarget struct {
	name   string
	args   []string
	keysOf func(t *testing.T, sku string) []string
}

// runTargets lists the embedded miniredis, a miniredis given with -redis
// (so that the test can look at it afterwards), and the real Redis at
// $MPAUTHX_REDIS_ADDR when it is set.
func runTargets(t *testing.T) []runTarget {
	mr := miniredis.RunT(t)
	ts := []runTarget{
		{name: "embedded", args: nil},
		{name: "miniredis", args: []string{"-redis", mr.Addr()}, keysOf: func(t *testing.T, sku string) []string {
			var left []string
			for _, k := range mr.Keys() {
				if strings.Contains(k, sku) {
					left = append(left, k)
				}
			}
			return left
		}},
	}
	if addr := os.Getenv(envRedisAddr); addr != "" {
		ts = append(ts, runTarget{name: "redis", args: []string{"-redis", addr}, keysOf: func(t *testing.T, sku string) []string {
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			defer rdb.Close()
			var left []string
			iter := rdb.Scan(context.Background(), 0, "mpauthx:{*|"+sku+"}:*", 1000).Iterator()
			for iter.Next(context.Background()) {
				left = append(left, iter.Val())
			}
			if err := iter.Err(); err != nil {
				t.Fatal(err)
			}
			return left
		}})
		ts = append(ts, runTarget{name: "redis-local-cache", args: []string{"-redis", addr, "-local-cache", "1000"}, keysOf: ts[len(ts)-1].keysOf})
	}
	return ts
}

// TestRun runs the whole benchmark with small numbers and checks its one
// JSON line: every documented field, every login and check counted, no
// failure or wrong answer, bad tokens among the checks, and no key of the
// run left in Redis.
func TestRun(t *testing.T) {
	for _, tt := range runTargets(t) {
		t.Run(tt.name, func(t *testing.T) {
			const users, prefill = 40, 2500 // prefill: more than one pipeline
			args := append(slices.Clone(tt.args), "-users", "40", "-prefill", "2500", "-concurrency", "4", "-seconds", "0.2")
			var stdout, stderr bytes.Buffer
			if err := run(context.Background(), args, &stdout, &stderr); err != nil {
				t.Fatalf("run: %v\nstderr:\n%s", err, &stderr)
			}
			if n := strings.Count(stdout.String(), "\n"); n != 1 || !strings.HasSuffix(stdout.String(), "\n") {
				t.Fatalf("stdout has %d lines, want one JSON line:\n%s", n, &stdout)
			}

			var fields map[string]json.RawMessage
			if err := json.Unmarshal(stdout.Bytes(), &fields); err != nil {
				t.Fatalf("stdout is not a JSON object: %v\n%s", err, &stdout)
			}
			for _, k := range []string{"redis", "real_redis", "sku", "gomaxprocs", "users", "prefill", "concurrency",
				"seconds", "fake_process", "local_cache", "logins", "checks", "rechecks", "bad_checks", "keys_left"} {
				if _, ok := fields[k]; !ok {
					t.Errorf("the JSON has no %q", k)
				}
			}
			for _, phase := range []string{"logins", "checks", "rechecks"} {
				var p map[string]json.RawMessage
				if err := json.Unmarshal(fields[phase], &p); err != nil {
					t.Fatalf("%s: %v", phase, err)
				}
				for _, k := range []string{"count", "per_sec", "p50_us", "p99_us", "max_us", "failures", "wrong"} {
					if _, ok := p[k]; !ok {
						t.Errorf("%s has no %q", phase, k)
					}
				}
			}

			var rep Report
			dec := json.NewDecoder(&stdout)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rep); err != nil {
				t.Fatal(err)
			}
			if rep.RealRedis != (tt.args != nil) || rep.Users != users || rep.Prefill != prefill || rep.Concurrency != 4 || rep.Seconds != 0.2 {
				t.Errorf("the report does not echo the run: %+v", rep)
			}
			if rep.Logins.Count != users || rep.Logins.Failures != 0 || rep.Logins.Wrong != 0 {
				t.Errorf("logins = %+v, want %d without failures or wrong answers", rep.Logins, users)
			}
			if rep.Checks.Count == 0 || rep.Checks.Failures != 0 || rep.Checks.Wrong != 0 {
				t.Errorf("checks = %+v, want some without failures or wrong answers", rep.Checks)
			}
			if rep.Rechecks.Count == 0 || rep.Rechecks.Failures != 0 || rep.Rechecks.Wrong != 0 {
				t.Errorf("rechecks = %+v, want some without failures or wrong answers", rep.Rechecks)
			}
			if real := strings.HasPrefix(tt.name, "redis"); real != (rep.Checks.RedisCommands > 0) || real != (rep.Rechecks.CommandsPerCall > 0) {
				t.Errorf("Redis's commands: checks %+v, rechecks %+v, want them counted on a real Redis only", rep.Checks, rep.Rechecks)
			}
			if rep.LocalCache > 0 && rep.Rechecks.CommandsPerCall >= rep.Checks.CommandsPerCall {
				t.Errorf("with a local cache, the rechecks of live tokens cost %v Redis commands per check, the checks %v: want fewer",
					rep.Rechecks.CommandsPerCall, rep.Checks.CommandsPerCall)
			}
			if rep.BadChecks == 0 || rep.BadChecks >= rep.Checks.Count {
				t.Errorf("%d of %d checks were of bad tokens, want some but not all", rep.BadChecks, rep.Checks.Count)
			}
			for name, p := range map[string]Phase{"logins": rep.Logins, "checks": rep.Checks, "rechecks": rep.Rechecks} {
				if !(p.PerSec > 0) || p.P50us > p.P99us || p.P99us > p.MaxUs {
					t.Errorf("%s: rate %v, p50 %v, p99 %v, max %v: want a positive rate and p50 <= p99 <= max",
						name, p.PerSec, p.P50us, p.P99us, p.MaxUs)
				}
			}
			if rep.KeysLeft != 0 {
				t.Errorf("keys_left = %d", rep.KeysLeft)
			}
			if tt.keysOf != nil {
				if left := tt.keysOf(t, rep.Sku); len(left) > 0 {
					t.Errorf("%d keys of the run left in Redis, such as %q", len(left), left[0])
				}
			}
			if !strings.Contains(stderr.String(), "prefill: 2500 keys") {
				t.Errorf("stderr does not report the prefill:\n%s", &stderr)
			}
		})
	}
}

// TestRunBadFlags checks that a bad command line is a usage error naming
// the flag, before anything is measured or printed on stdout.
func TestRunBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-nope"}, "-nope"},
		{"not a number", []string{"-users", "many"}, "-users"},
		{"no users", []string{"-users", "0"}, "-users"},
		{"negative prefill", []string{"-prefill", "-1"}, "-prefill"},
		{"no concurrency", []string{"-concurrency", "0"}, "-concurrency"},
		{"zero seconds", []string{"-seconds", "0"}, "-seconds"},
		{"NaN seconds", []string{"-seconds", "NaN"}, "-seconds"},
		{"negative db", []string{"-redis-db", "-1"}, "-redis-db"},
		{"negative local cache", []string{"-local-cache", "-1"}, "-local-cache"},
		{"extra argument", []string{"-users", "5", "extra"}, `"extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, &stdout, &stderr)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("run(%q) = %v, want a usage error", tt.args, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout: %q, want nothing", &stdout)
			}
		})
	}
}

// TestRunRedisDown checks that an unreachable Redis is reported as such,
// not as a usage error, and prints no report.
func TestRunRedisDown(t *testing.T) {
	mr := miniredis.RunT(t)
	addr := mr.Addr()
	mr.Close()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-redis", addr, "-users", "1", "-prefill", "0", "-seconds", "0.1"}, &stdout, &stderr)
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("run = %v, want an error naming %s", err, addr)
	}
	if stdout.Len() > 0 {
		t.Errorf("stdout: %q, want nothing", &stdout)
	}
}

// TestHistogram checks that a quantile lands within the bucket width
// (about 3%) of the true value, and the edge cases.
func TestHistogram(t *testing.T) {
	var empty histogram
	if q := empty.quantile(0.5); q != 0 {
		t.Errorf("empty quantile = %v, want 0", q)
	}
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		want    time.Duration
	}{
		{"one sample", []time.Duration{250 * time.Microsecond}, 0.99, 250 * time.Microsecond},
		{"median of a range", rangeOf(1000, time.Microsecond), 0.5, 500 * time.Microsecond},
		{"p99 of a range", rangeOf(1000, time.Microsecond), 0.99, 990 * time.Microsecond},
		{"p99 with a slow tail", append(rangeOf(990, time.Microsecond), rangeOf(10, time.Second)...), 0.99, 990 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, d := range tt.samples {
				h.record(d)
			}
			got := h.quantile(tt.q)
			want := float64(tt.want) / 1e3
			if got < want*0.96 || got > want*1.04 {
				t.Errorf("quantile(%v) = %vµs, want %vµs ± 4%%", tt.q, got, want)
			}
			if h.n != int64(len(tt.samples)) {
				t.Errorf("n = %d, want %d", h.n, len(tt.samples))
			}
		})
	}
}

// rangeOf returns unit, 2*unit, ..., n*unit.
func rangeOf(n int, unit time.Duration) []time.Duration {
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = time.Duration(i+1) * unit
	}
	return ds
}
