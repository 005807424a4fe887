package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/burrow-vpn/burrow/internal/access"
)

// Client implements API over HTTP against a running server's Handler.
type Client struct {
	hc    *http.Client
	base  string // "http://burrow" for a socket, "http://HOST:PORT" for TCP
	token string
}

var _ API = (*Client)(nil)

// NewUnixClient returns a client for the socket at path. It does not connect.
func NewUnixClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		MaxIdleConns: 2,
	}
	return &Client{hc: &http.Client{Transport: tr, Timeout: time.Minute}, base: "http://burrow"}
}

// NewTCPClient returns a client for a TCP listener (HOST:PORT) that requires token.
func NewTCPClient(addr, token string) *Client {
	return &Client{hc: &http.Client{Timeout: time.Minute}, base: "http://" + addr, token: token}
}

// DialUnix returns a client for the socket at path if a server answers
// there within a second, or an error saying why not (no server running).
func DialUnix(ctx context.Context, path string) (*Client, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	c.Close()
	return NewUnixClient(path), nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Error is an error answer from the server. It unwraps to the access
// sentinel matching its status (ErrInvalid, ErrNotFound, ErrExists).
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string { return e.Message }

func (e *Error) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return access.ErrInvalid
	case http.StatusNotFound:
		return access.ErrNotFound
	case http.StatusConflict:
		return access.ErrExists
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin: %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var eb errorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error = fmt.Sprintf("admin: %s %s: %s", method, path, resp.Status)
		}
		return &Error{Status: resp.StatusCode, Message: eb.Error}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("admin: %s %s: bad answer: %w", method, path, err)
	}
	return nil
}

func userPath(name, action string) string {
	p := "/v1/users/" + url.PathEscape(name)
	if action != "" {
		p += "/" + action
	}
	return p
}

// ListUsers implements API.
func (c *Client) ListUsers(ctx context.Context) ([]UserInfo, error) {
	var v []UserInfo
	return v, c.do(ctx, http.MethodGet, "/v1/users", nil, &v)
}

// AddUser implements API.
func (c *Client) AddUser(ctx context.Context, req AddRequest) (*UserInfo, error) {
	return c.userCall(ctx, http.MethodPost, "/v1/users", req)
}

// User implements API.
func (c *Client) User(ctx context.Context, name string) (*UserInfo, error) {
	return c.named(ctx, http.MethodGet, name, "", nil)
}

// SetUser implements API.
func (c *Client) SetUser(ctx context.Context, name string, req SetRequest) (*UserInfo, error) {
	return c.named(ctx, http.MethodPatch, name, "", req)
}

// Revoke implements API.
func (c *Client) Revoke(ctx context.Context, name string) (*UserInfo, error) {
	return c.named(ctx, http.MethodPost, name, "revoke", nil)
}

// Enable implements API.
func (c *Client) Enable(ctx context.Context, name string) (*UserInfo, error) {
	return c.named(ctx, http.MethodPost, name, "enable", nil)
}

// Rotate implements API.
func (c *Client) Rotate(ctx context.Context, name string) (*UserInfo, error) {
	return c.named(ctx, http.MethodPost, name, "rotate", nil)
}

// ResetTraffic implements API.
func (c *Client) ResetTraffic(ctx context.Context, name string) (*UserInfo, error) {
	return c.named(ctx, http.MethodPost, name, "reset-traffic", nil)
}

// named calls a /v1/users/{name}[/action] route. An empty name would make
// a different path, so it is refused here with the server's words.
func (c *Client) named(ctx context.Context, method, name, action string, in any) (*UserInfo, error) {
	if name == "" {
		return nil, fmt.Errorf("access: name: empty: %w", access.ErrInvalid)
	}
	return c.userCall(ctx, method, userPath(name, action), in)
}

func (c *Client) userCall(ctx context.Context, method, path string, in any) (*UserInfo, error) {
	var v UserInfo
	if err := c.do(ctx, method, path, in, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Stats implements API.
func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	var v Stats
	return &v, c.do(ctx, http.MethodGet, "/v1/stats", nil, &v)
}

// Health implements API.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var v Health
	return &v, c.do(ctx, http.MethodGet, "/v1/health", nil, &v)
}
