package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// EnvAddr names the environment variable that points tests at a Redis
// server (host:port) instead of 127.0.0.1:6379.
const EnvAddr = "WAFLEET_TEST_REDIS"

// Prefix returns a key prefix unique to this test run.
func Prefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "wafleet-test-" + hex.EncodeToString(b[:])
}

// Shared returns a client of the shared test server and a fresh key prefix;
// every key under the prefix is deleted when the test ends. When no shared
// server answers, it starts a private one.
func Shared(t testing.TB) (*goredis.Client, string) {
	t.Helper()
	addr := os.Getenv(EnvAddr)
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	c := goredis.NewClient(&goredis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err := c.Ping(ctx).Err()
	cancel()
	if err != nil {
		_ = c.Close()
		srv := Start(t, Config{})
		return srv.Client(t), Prefix()
	}
	prefix := Prefix()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		DeletePrefix(ctx, c, prefix)
		_ = c.Close()
	})
	return c, prefix
}

// DeletePrefix deletes every key starting with prefix+":".
func DeletePrefix(ctx context.Context, c goredis.UniversalClient, prefix string) {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+":*", 1000).Result()
		if err != nil {
			return
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
		if next == 0 {
			return
		}
		cursor = next
	}
}

// Config configures a private server.
type Config struct {
	// AOF turns on appendonly (appendfsync everysec) so the data survives
	// Restart. Default off: no AOF and no RDB, so Restart loses the data.
	AOF bool

	// args are more redis-server arguments (cluster mode, replication);
	// sentinel, when set, is the content of a Sentinel's configuration
	// file, and the server runs as a Sentinel (cluster.go, sentinel.go).
	args     []string
	sentinel string
}

// Server is a private redis-server listening on a Unix socket in a
// temporary directory, and on a free TCP port of 127.0.0.1 for processes
// configured with an address (Addr).
type Server struct {
	t      testing.TB
	dir    string
	sock   string
	port   int
	cfg    Config
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts a private redis-server; it is killed when the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redistest: no Redis server for this test: nothing answers on 127.0.0.1:6379 (or $%s) and redis-server is not in PATH (%v); install redis-server or start one", EnvAddr, err)
	}
	// A short directory: Unix socket paths are limited to ~100 bytes.
	dir, err := os.MkdirTemp("", "wfr")
	if err != nil {
		t.Fatalf("redistest: temp dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &Server{t: t, dir: dir, sock: filepath.Join(dir, "redis.sock"), cfg: cfg, port: freePort(t)}
	s.start(bin)
	t.Cleanup(s.Kill)
	return s
}

func (s *Server) start(bin string) {
	s.t.Helper()
	var args []string
	if s.cfg.sentinel != "" {
		// A Sentinel rewrites its configuration file: it must be its own.
		conf := filepath.Join(s.dir, "sentinel.conf")
		if _, err := os.Stat(conf); err != nil {
			if err := os.WriteFile(conf, []byte(s.cfg.sentinel), 0o600); err != nil {
				s.t.Fatalf("redistest: %v", err)
			}
		}
		args = append(args, conf, "--sentinel")
	}
	args = append(args,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--unixsocket", s.sock, "--unixsocketperm", "700",
		"--dir", s.dir, "--daemonize", "no", "--logfile", filepath.Join(s.dir, "redis.log"))
	if s.cfg.sentinel != "" {
		s.launch(bin, args)
		return
	}
	args = append(args, "--save", "")
	args = append(args, s.cfg.args...)
	if s.cfg.AOF {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
	}
	s.launch(bin, args)
}

// launch starts redis-server with args and waits until it listens and
// has loaded its data (a server reading its AOF answers LOADING).
func (s *Server) launch(bin string, args []string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redistest: start redis-server: %v", err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.cmd, s.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("unix", s.sock, 200*time.Millisecond)
		if err == nil {
			_ = conn.Close()
			s.awaitLoaded()
			return
		}
		select {
		case <-s.exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redistest: redis-server exited at start; log:\n%s", log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: redis-server did not listen on %s within 10s", s.sock)
		}
	}
}

// awaitLoaded waits until the listening server answers PING with anything
// but LOADING.
func (s *Server) awaitLoaded() {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	c := goredis.NewClient(s.Options())
	defer c.Close()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), "LOADING") {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redistest: redis-server still loading its data after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dir is the server's working directory, where it writes its AOF (in
// appendonlydir/ since Redis 7) and log.
func (s *Server) Dir() string { return s.dir }

// Addr is the server's TCP address, host:port; it stays the same across
// Restart.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Options returns client options for the server (fast reconnects).
func (s *Server) Options() *goredis.Options {
	return &goredis.Options{
		Network: "unix", Addr: s.sock,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, PoolSize: 4,
	}
}

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client(t testing.TB) *goredis.Client {
	c := goredis.NewClient(s.Options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Kill stops the server at once (SIGKILL) and waits for it to exit.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// Restart kills the server and starts it again on the same socket. Without
// AOF the data is gone afterwards.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	_ = os.Remove(s.sock)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		s.t.Fatalf("redistest: %v", err)
	}
	s.start(bin)
}

// String describes the server.
func (s *Server) String() string { return fmt.Sprintf("redis-server on %s", s.sock) }
