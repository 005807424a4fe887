package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/burrow-vpn/burrow/internal/access"
	"github.com/burrow-vpn/burrow/internal/meter"
	"github.com/burrow-vpn/burrow/internal/server"
	"github.com/burrow-vpn/burrow/internal/telemetry"
)

type fakeLive map[int64]int

func (f fakeLive) Active() map[int64]int { return f }

// setup returns a Local on a real SQLite file and a Client talking to it
// over a real unix socket.
func setup(t *testing.T) (*Local, *Client, *atomic.Int64) {
	t.Helper()
	dir, err := os.MkdirTemp("", "adm") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st, err := access.OpenSQLite(filepath.Join(dir, "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var changes atomic.Int64
	local := &Local{Store: st, Live: fakeLive{1: 2}, Changed: func() { changes.Add(1) },
		Counters:        func() Counters { return Counters{Active: 2, BytesDown: 7} },
		SubscriptionURL: func(tok string) string { return "https://sub.example/" + tok }}
	sock := filepath.Join(dir, "admin.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: Handler(local, "")}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	c, err := DialUnix(context.Background(), sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return local, c, &changes
}

func TestSocketMode(t *testing.T) {
	dir, _ := os.MkdirTemp("", "adm")
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "a.sock")
	ln, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "another burrow server") {
		t.Errorf("ListenUnix on a live socket: err = %v, want a refusal", err)
	}
	ln.Close()
	// A stale socket file (server killed) is replaced.
	os.WriteFile(filepath.Join(dir, "plain"), nil, 0o600)
	if _, err := ListenUnix(filepath.Join(dir, "plain")); err == nil {
		t.Error("ListenUnix over a regular file succeeded; want a refusal")
	}
	if _, err := DialUnix(context.Background(), sock); err == nil {
		t.Error("DialUnix with no server succeeded")
	}
}

func TestClientRoundTrip(t *testing.T) {
	ctx := context.Background()
	_, c, changes := setup(t)
	u, err := c.AddUser(ctx, AddRequest{Name: "alice", Quota: "5GB", Expires: "30d", Reset: "monthly", Note: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Quota != 5e9 || u.Reset != "monthly" || u.Note != "hi" || u.ExpiresAt.IsZero() || u.Status != "active" {
		t.Errorf("AddUser = %+v, want quota 5e9, monthly, note, expiry, active", u)
	}
	if u.SubscriptionURL != "https://sub.example/"+u.SubToken || len(u.SubToken) != 43 {
		t.Errorf("SubscriptionURL = %q, want it built from the token", u.SubscriptionURL)
	}
	if _, err := u.User(); err != nil {
		t.Errorf("UserInfo.User: %v", err)
	}
	got, err := c.User(ctx, "ALICE")
	if err != nil || got.UUID != u.UUID || got.Connected != 2 {
		t.Errorf("User(ALICE) = %+v, %v; want alice with 2 connections", got, err)
	}
	q := "0"
	never := "never"
	if got, err = c.SetUser(ctx, "alice", SetRequest{Quota: &q, Expires: &never}); err != nil || got.Quota != 0 || !got.ExpiresAt.IsZero() {
		t.Errorf("SetUser = %+v, %v; want unlimited, never", got, err)
	}
	rot, err := c.Rotate(ctx, "alice")
	if err != nil || rot.UUID == u.UUID || rot.SubToken != u.SubToken {
		t.Errorf("Rotate = %+v, %v; want a new UUID and the same token", rot, err)
	}
	if got, err = c.ResetTraffic(ctx, "alice"); err != nil || got.BytesUp != 0 {
		t.Errorf("ResetTraffic = %+v, %v", got, err)
	}
	if got, err = c.Revoke(ctx, "alice"); err != nil || !got.Revoked || got.Status != "revoked" || got.SubscriptionURL != "" {
		t.Errorf("Revoke = %+v, %v; want revoked, no subscription URL", got, err)
	}
	list, err := c.ListUsers(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "alice" {
		t.Errorf("ListUsers = %+v, %v", list, err)
	}
	st, err := c.Stats(ctx)
	if err != nil || !st.Running || st.Totals.Active != 2 || st.Connected["alice"] != 2 {
		t.Errorf("Stats = %+v, %v; want running, 2 active, alice connected 2", st, err)
	}
	h, err := c.Health(ctx)
	if err != nil || h.Status != "ok" || h.Users != 1 {
		t.Errorf("Health = %+v, %v", h, err)
	}
	if n := changes.Load(); n != 5 {
		t.Errorf("Changed called %d times, want 5 (add, set, rotate, reset, revoke)", n)
	}
}

// TestAdversarialInput feeds nonsense to every field of every call, through
// both implementations, and wants each refused with a reason.
func TestAdversarialInput(t *testing.T) {
	ctx := context.Background()
	local, client, _ := setup(t)
	if _, err := local.AddUser(ctx, AddRequest{Name: "taken"}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a", 5000)
	s := func(v string) *string { return &v }
	type tc struct {
		name   string
		call   func(API) error
		want   error  // sentinel
		reason string // substring of the message
	}
	add := func(r AddRequest) func(API) error {
		return func(a API) error { _, err := a.AddUser(ctx, r); return err }
	}
	set := func(name string, r SetRequest) func(API) error {
		return func(a API) error { _, err := a.SetUser(ctx, name, r); return err }
	}
	cases := []tc{
		{"empty name", add(AddRequest{Name: ""}), access.ErrInvalid, "empty"},
		{"space name", add(AddRequest{Name: " "}), access.ErrInvalid, "space"},
		{"control char", add(AddRequest{Name: "a\x00b"}), access.ErrInvalid, "control"},
		{"newline", add(AddRequest{Name: "a\nb"}), access.ErrInvalid, "control"},
		{"5000 chars", add(AddRequest{Name: long}), access.ErrInvalid, "at most 64"},
		{"flag-like", add(AddRequest{Name: "-rf"}), access.ErrInvalid, "must start"},
		{"slash", add(AddRequest{Name: "a/b"}), access.ErrInvalid, "not allowed"},
		{"bad utf8", add(AddRequest{Name: "a\xffb"}), access.ErrInvalid, "name: "},
		{"duplicate", add(AddRequest{Name: "TAKEN"}), access.ErrExists, "exists"},
		{"negative quota", add(AddRequest{Name: "q1", Quota: "-5GB"}), access.ErrInvalid, "negative"},
		{"overflowing quota", add(AddRequest{Name: "q2", Quota: "99999999999EB"}), access.ErrInvalid, "too large"},
		{"junk quota", add(AddRequest{Name: "q3", Quota: "lots"}), access.ErrInvalid, "number"},
		{"long quota", add(AddRequest{Name: "q4", Quota: long}), access.ErrInvalid, "too long"},
		{"past expiry", add(AddRequest{Name: "e1", Expires: "2001-01-01"}), access.ErrInvalid, "past"},
		{"negative expiry", add(AddRequest{Name: "e2", Expires: "-3d"}), access.ErrInvalid, "negative"},
		{"zero expiry", add(AddRequest{Name: "e3", Expires: "0d"}), access.ErrInvalid, "zero"},
		{"overflowing expiry", add(AddRequest{Name: "e4", Expires: "99999999999999d"}), access.ErrInvalid, "100 years"},
		{"control expiry", add(AddRequest{Name: "e5", Expires: "3d\x00"}), access.ErrInvalid, "expiry"},
		{"bad reset", add(AddRequest{Name: "r1", Reset: "daily"}), access.ErrInvalid, "monthly"},
		{"long note", add(AddRequest{Name: "n1", Note: long}), access.ErrInvalid, "at most 1000"},
		{"control note", add(AddRequest{Name: "n2", Note: "x\x1b[2J"}), access.ErrInvalid, "control"},
		{"set nothing", set("taken", SetRequest{}), access.ErrInvalid, "nothing to change"},
		{"set empty quota", set("taken", SetRequest{Quota: s("")}), access.ErrInvalid, "empty"},
		{"set negative quota", set("taken", SetRequest{Quota: s("-1")}), access.ErrInvalid, "negative"},
		{"set empty expiry", set("taken", SetRequest{Expires: s("")}), access.ErrInvalid, "empty"},
		{"set bad reset", set("taken", SetRequest{Reset: s(long)}), access.ErrInvalid, "monthly"},
		{"set control note", set("taken", SetRequest{Note: s("\x07")}), access.ErrInvalid, "control"},
		{"set missing user", set("nobody", SetRequest{Note: s("x")}), access.ErrNotFound, "not found"},
		{"set control name", set("a\tb", SetRequest{Note: s("x")}), access.ErrInvalid, "control"},
	}
	for _, name := range []string{"", "a\x00", long, "nobody", "../../etc"} {
		for verb, f := range map[string]func(API, context.Context, string) (*UserInfo, error){
			"show": API.User, "revoke": API.Revoke, "rotate": API.Rotate, "reset-traffic": API.ResetTraffic} {
			want, reason := access.ErrInvalid, ""
			if name == "nobody" {
				want, reason = access.ErrNotFound, "not found"
			}
			cases = append(cases, tc{verb + " " + name[:min(len(name), 10)], func(a API) error { _, err := f(a, ctx, name); return err }, want, reason})
		}
	}
	for _, impl := range []struct {
		name string
		api  API
	}{{"local", local}, {"client", client}} {
		for _, c := range cases {
			err := c.call(impl.api)
			if err == nil || !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.reason) {
				t.Errorf("%s: %s = %v; want an error wrapping %v that says %q", impl.name, c.name, err, c.want, c.reason)
			}
		}
	}
	users, _ := local.ListUsers(ctx)
	if len(users) != 1 {
		t.Errorf("after adversarial input %d users exist, want 1", len(users))
	}
}

// TestRawHTTP sends malformed bodies and checks each is refused with a reason.
func TestRawHTTP(t *testing.T) {
	_, c, _ := setup(t)
	cases := []struct {
		method, path, body string
		code               int
		reason             string
	}{
		{"POST", "/v1/users", `{"name":"x","quota":5}`, 400, "cannot unmarshal number"},
		{"POST", "/v1/users", `{"name":"x","admin":true}`, 400, "unknown field"},
		{"POST", "/v1/users", `{"name":"x"}{"name":"y"}`, 400, "more than one"},
		{"POST", "/v1/users", `{"name":`, 400, "unexpected EOF"},
		{"POST", "/v1/users", ``, 400, "EOF"},
		{"POST", "/v1/users", `[]`, 400, "cannot unmarshal array"},
		{"POST", "/v1/users", `{"name":"` + strings.Repeat("a", 70000) + `"}`, 413, "larger than"},
		{"POST", "/v1/users", `{"name":"x","quota":"1e999"}`, 400, "size"},
		{"PATCH", "/v1/users/x", `{"quota":null,"note":1}`, 400, "cannot unmarshal"},
		{"DELETE", "/v1/users/x", ``, 404, "no such route"},
		{"GET", "/v2/nothing", ``, 404, "no such route"},
		{"GET", "/v1/users/%00", ``, 400, "control"},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, c.base+tc.path, strings.NewReader(tc.body))
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.reason) {
			t.Errorf("%s %s %.40q = %d %s; want %d saying %q", tc.method, tc.path, tc.body, resp.StatusCode, b, tc.code, tc.reason)
		}
	}
}

func TestBearerToken(t *testing.T) {
	local, _, _ := setup(t)
	dir := t.TempDir()
	tok, err := LoadOrCreateToken(filepath.Join(dir, "admin.token"))
	if err != nil || len(tok) < 32 {
		t.Fatalf("LoadOrCreateToken = %q, %v", tok, err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "admin.token"))
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	if again, _ := LoadOrCreateToken(filepath.Join(dir, "admin.token")); again != tok {
		t.Errorf("second LoadOrCreateToken = %q, want the stored %q", again, tok)
	}
	hs := &http.Server{Handler: Handler(local, tok)}
	ln, err := netListen()
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	ctx := context.Background()
	for _, bad := range []string{"", "wrong", tok + "x", tok[:len(tok)-1]} {
		_, err := NewTCPClient(ln.Addr().String(), bad).Health(ctx)
		var ae *Error
		if !errors.As(err, &ae) || ae.Status != 401 {
			t.Errorf("Health with token %.8q... = %v, want 401", bad, err)
		}
	}
	if h, err := NewTCPClient(ln.Addr().String(), tok).Health(ctx); err != nil || h.Status != "ok" {
		t.Errorf("Health with the token = %+v, %v", h, err)
	}
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

// TestLiveCounters: with a running server's registry, the API shows each
// user's bytes as counted in memory, not as last flushed to the store, and
// judges the quota on them; a traffic reset answers with the new period's.
func TestLiveCounters(t *testing.T) {
	dir := t.TempDir()
	st, err := access.OpenSQLite(filepath.Join(dir, "users.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if _, err := st.CreateUser(ctx, access.NewUser{Name: "ann", Quota: 50 << 20}); err != nil {
		t.Fatal(err)
	}
	reg := server.NewRegistry(st, slog.New(slog.DiscardHandler))
	if err := reg.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	u, err := st.UserByName(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	sess, err := reg.Acquire(u.UUID)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	move := func(d *server.Direction, n int64) int64 {
		g := meter.ReserveAll(d, n)
		d.Settle(g, g)
		return g
	}
	move(sess.Up(), 1<<20)
	move(sess.Down(), 30<<20) // counted, not flushed
	local := &Local{Store: st, Live: reg}

	got, err := local.User(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if got.BytesUp != 1<<20 || got.BytesDown != 30<<20 || got.Connected != 1 || got.Status != "active" {
		t.Errorf("User = up %d, down %d, connected %d, %q; want %d, %d, 1, active", got.BytesUp, got.BytesDown,
			got.Connected, got.Status, 1<<20, 30<<20)
	}
	if got := move(sess.Down(), 20<<20); got != 19<<20 { // the rest of the 50 MB quota
		t.Errorf("moved %d bytes of 20 MiB asked; want the %d left of the quota", got, 19<<20)
	}
	list, err := local.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].BytesDown != 49<<20 || list[0].Status != "over quota" {
		t.Errorf("ListUsers = %+v; want ann with %d bytes down, over quota", list, 49<<20)
	}
	revoked, err := local.Revoke(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if revoked.BytesUp+revoked.BytesDown != 50<<20 || revoked.Status != "revoked" {
		t.Errorf("Revoke = %d bytes, %q; want %d, revoked", revoked.BytesUp+revoked.BytesDown, revoked.Status, 50<<20)
	}
	reset, err := local.ResetTraffic(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	if reset.BytesUp != 0 || reset.BytesDown != 0 {
		t.Errorf("ResetTraffic = up %d, down %d; want 0, 0", reset.BytesUp, reset.BytesDown)
	}
}

// TestTelemetryStats: the running server's telemetry totals reach the
// admin API's stats (over the socket) and the metrics snapshot.
func TestTelemetryStats(t *testing.T) {
	ctx := context.Background()
	base, _, _ := setup(t)
	agg := telemetry.NewAggregator(base.Store.(*access.SQLiteStore), nil)
	agg.Add(1, &telemetry.Report{Entries: []telemetry.Entry{{Transport: telemetry.TCP, Metric: telemetry.Freeze, Bucket: 4, Count: 2}}})
	agg.Reject()
	local := &Local{Store: base.Store, Counters: base.Counters, Telemetry: agg.Totals}
	srv := httptest.NewServer(Handler(local, "tok"))
	defer srv.Close()
	c := NewTCPClient(srv.Listener.Addr().String(), "tok")
	defer c.Close()
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := &TelemetryStats{Rejected: 1, Counts: []TelemetryCount{
		{Transport: "tcp", Metric: "freeze", Bucket: 16, Count: 2},
		{Transport: "tcp", Metric: "reports", Count: 1},
	}}
	if st.Telemetry == nil || fmt.Sprint(*st.Telemetry) != fmt.Sprint(*want) {
		t.Errorf("Stats().Telemetry = %+v, want %+v", st.Telemetry, want)
	}
	snap, err := local.Snapshot(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Telemetry == nil || snap.Telemetry.Rejected != 1 || len(snap.Telemetry.Counts) != 2 || snap.Telemetry.Counts[0].Bucket != 16 {
		t.Errorf("Snapshot().Telemetry = %+v", snap.Telemetry)
	}
	if st, err := base.Stats(ctx); err != nil || st.Telemetry != nil {
		t.Errorf("Stats() without telemetry = %+v, %v; want none", st, err)
	}
}
