//go:build unix

package mpauthx_test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// redisProc is a redis-server process owned by one test: started on a free
// loopback port in a directory of its own, and killed when the test ends.
// The fault tests kill, restart and pause it; they never touch a shared
// server. Its methods run on the test's goroutine and start no goroutine
// of their own, so that goleak sees only the library's.
type redisProc struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	args []string
	cmd  *exec.Cmd // nil while the server is down
}

// redisReadyTimeout bounds the wait for a (re)started server to answer PING.
const redisReadyTimeout = 10 * time.Second

// startRedis starts redis-server with the given extra arguments (for
// example "--appendonly", "yes") and waits until it answers PING.
//
// The test is skipped when redis-server is not installed, unless
// MPAUTHX_REDIS_ADDR is set: a run that provides a real Redis (CI) must
// also run the fault tests, so there a missing redis-server fails.
func startRedis(t *testing.T, extra ...string) *redisProc {
	t.Helper()
	return startRedisPort(t, 0, extra...)
}

// startRedisPort is startRedis on the given port (0: a free one).
func startRedisPort(t *testing.T, port int, extra ...string) *redisProc {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(envRedisAddr) == "" {
			t.Skipf("redis-server is not in PATH (%v): this fault test starts, kills and restarts a Redis of its own; install redis-server to run it (it is required when %s is set)", err, envRedisAddr)
		}
		t.Fatalf("redis-server is not in PATH (%v), but %s is set: a run with a real Redis must run the fault tests too", err, envRedisAddr)
	}
	if port == 0 {
		port = freePort(t)
	}
	p := &redisProc{t: t, bin: bin, dir: t.TempDir(), port: port}
	p.args = append([]string{
		"--port", strconv.Itoa(p.port),
		"--bind", "127.0.0.1",
		"--dir", p.dir,
		"--logfile", filepath.Join(p.dir, "redis.log"),
		"--daemonize", "no",
		"--save", "",
		"--enable-debug-command", "local",
	}, extra...)
	t.Cleanup(p.cleanup) // after TempDir's cleanup is registered: runs first
	p.Start()
	return p
}

// Addr returns the server's host:port.
func (p *redisProc) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// Start starts the server (again, after Kill: same port, same directory,
// so that it reloads what it persisted) and waits until it answers PING,
// which it does only once it has loaded its data. It returns how long that
// took.
func (p *redisProc) Start() time.Duration {
	p.t.Helper()
	if p.cmd != nil {
		p.t.Fatal("redisProc.Start: the server is running")
	}
	begin := time.Now()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("starting redis-server: %v", err)
	}
	p.cmd = cmd
	for deadline := time.Now().Add(redisReadyTimeout); !p.pong(); {
		if time.Now().After(deadline) {
			p.t.Fatalf("redis-server on %s did not answer PING within %v; its log:\n%s", p.Addr(), redisReadyTimeout, p.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(begin)
}

// pong reports whether the server answers PING with PONG (not, for
// example, with -LOADING while it reads its append-only file).
func (p *redisProc) pong() bool {
	conn, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.TrimSpace(line) == "+PONG"
}

// Kill stops the server with SIGKILL, as a crash or an OOM kill would: no
// shutdown, no final save. It returns once the process is gone.
func (p *redisProc) Kill() {
	p.t.Helper()
	if p.cmd == nil {
		p.t.Fatal("redisProc.Kill: the server is not running")
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatalf("killing redis-server: %v", err)
	}
	p.cmd.Wait() // "signal: killed"
	p.cmd = nil
}

// Pause stops the process with SIGSTOP: connections are still accepted by
// the kernel, but nothing is answered until Resume.
func (p *redisProc) Pause() { p.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT. Unlike the other
// methods it may be called from any goroutine (from a timer, say) while the
// test goroutine does not Kill or Start the server.
func (p *redisProc) Resume() { p.signal(syscall.SIGCONT) }

// signal sends sig to the server, reporting a failure with t.Errorf,
// which any goroutine may call.
func (p *redisProc) signal(sig syscall.Signal) {
	p.t.Helper()
	if p.cmd == nil {
		p.t.Errorf("redisProc: sending %v: the server is not running", sig)
		return
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Errorf("redisProc: sending %v: %v", sig, err)
	}
}

// log returns the server's log file, for failure messages.
func (p *redisProc) log() string {
	b, err := os.ReadFile(filepath.Join(p.dir, "redis.log"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// cleanup kills the server, paused or not, when the test ends.
func (p *redisProc) cleanup() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL) // SIGKILL ends a stopped process too
	p.cmd.Wait()
	p.cmd = nil
}

// ownRedisBackend returns a backend that starts a redis-server of the
// test's own (startRedis) for each test, when MPAUTHX_REDIS_ADDR is unset
// and redis-server is in PATH: the tests of Config.LocalCache need a Redis
// that tracks, and a plain `go test ./...` on a machine with redis-server
// runs them too. ok is false when MPAUTHX_REDIS_ADDR is set (backends()
// has that server already) or redis-server is missing.
func ownRedisBackend() (b backend, ok bool) {
	if os.Getenv(envRedisAddr) != "" {
		return backend{}, false
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return backend{}, false
	}
	return backend{name: "redis-server", open: func(t *testing.T) (redis.UniversalClient, *miniredis.Miniredis) {
		p := startRedis(t)
		rdb := redis.NewClient(&redis.Options{Addr: p.Addr()})
		t.Cleanup(func() { rdb.Close() })
		return rdb, nil
	}}, true
}
