package mpauthx_test

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/seeda8e74ca0/mpauthx"
)

// dropProxy forwards TCP connections to a Redis. Armed, it drops the
// connection that carries Redis's next reply instead of forwarding that
// reply: Redis has run the commands, the client never learns their
// results, and go-redis runs them again on a new connection.
type dropProxy struct {
	*loopback
	target  string
	armed   atomic.Bool
	dropped atomic.Int32
	evalsha atomic.Int32 // EVALSHA commands forwarded to Redis
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	p := &dropProxy{loopback: newLoopback(t), target: target}
	p.serve(p.forward)
	return p
}

// forward connects client to the Redis, one goroutine a direction.
func (p *dropProxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.keep(server)
	p.wg.Go(func() { p.requests(client, server) })
	p.replies(server, client)
}

// requests copies client to server, counting EVALSHAs (go-redis writes
// command names in lower case; tail keeps a name split across reads).
func (p *dropProxy) requests(client, server net.Conn) {
	defer server.Close()
	buf := make([]byte, 64<<10)
	var tail []byte
	for {
		n, err := client.Read(buf)
		if n > 0 {
			seen := append(tail, buf[:n]...)
			p.evalsha.Add(int32(bytes.Count(seen, []byte("evalsha"))))
			tail = append([]byte(nil), seen[max(0, len(seen)-6):]...)
			if _, werr := server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// replies copies server to client, unless armed.
func (p *dropProxy) replies(server, client net.Conn) {
	defer client.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 && p.armed.CompareAndSwap(true, false) {
			p.dropped.Add(1)
			server.Close()
			return
		}
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestLoginReplayedAfterLostReply: the logins' issue script goes through
// the autopipeliner, whose batches go-redis runs again when a connection
// drops, even after Redis ran them. The script is get-or-set, so the
// login run twice still ends with one token, the one the caller gets.
func TestLoginReplayedAfterLostReply(t *testing.T) {
	for _, b := range backends() {
		if b.name == "cluster" {
			continue // a proxy in front of a Cluster would have to rewrite its MOVED replies and slot map
		}
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			p := newDropProxy(t, e.rdb.(*redis.Client).Options().Addr)
			rdb := redis.NewClient(&redis.Options{Addr: p.addr()}) // go-redis's default retries
			t.Cleanup(func() { rdb.Close() })
			c := e.client(t, func(cfg *mpauthx.Config) { cfg.Redis = rdb })
			login := func(u string) (string, error) {
				res, err := c.AuthorizeCode(bg, e.wx.Code(u))
				return res.Response, err
			}
			if _, err := login(e.user("warm").OpenID); err != nil { // Redis now has the script cached
				t.Fatal(err)
			}
			u := e.user("replayed")
			before := p.evalsha.Load()
			p.armed.Store(true)
			tok, err := login(u.OpenID)
			if err != nil {
				t.Fatalf("AuthorizeCode with its reply lost: %v", err)
			}
			if p.dropped.Load() != 1 || p.evalsha.Load()-before != 2 {
				t.Fatalf("%d connections dropped, %d EVALSHAs sent; want the script sent again after one drop", p.dropped.Load(), p.evalsha.Load()-before)
			}
			if !e.valid(t, tok) {
				t.Fatal("the token of the replayed login is not valid")
			}
			if again, err := login(u.OpenID); err != nil || again != tok {
				t.Fatalf("the next login = %q, %v; want the same token", again, err)
			}
			if ttl := e.rdb.PTTL(bg, e.key(u.OpenID)).Val(); ttl <= 0 {
				t.Fatalf("PTTL = %v after the replay", ttl)
			}
		})
	}
}
