// Package controlclient is p2pctl's client for a peer daemon's control API
// (see internal/wire/ctlwire), over loopback HTTP or a unix socket.
package controlclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx"
	"github.com/p2pd/p2pd/internal/wire/ctlwire"
)

// Errors, matched with errors.Is. Errors from the daemon are an
// *APIError, which matches the sentinel for its status and code and
// carries the daemon's message.
var (
	ErrNotFound   = errors.New("not found")
	ErrBadRequest = errors.New("bad request")
	ErrDaemon     = errors.New("peer daemon error")
)

// APIError is an error answer of the daemon. Its Kind is the sentinel for
// its status and code.
type APIError = httpx.APIError

// maxBody bounds JSON responses.
const maxBody = 16 << 20

// Client talks to one daemon.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a client for addr: "http://127.0.0.1:7402", "127.0.0.1:7402",
// or "unix:/run/p2pd/control.sock".
func New(addr string) (*Client, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		path = strings.TrimPrefix(path, "//")
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
		return &Client{base: "http://unix", hc: &http.Client{Transport: tr}}, nil
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
		return nil, fmt.Errorf("controlclient: address %q: want http://host:port or unix:/path", addr)
	}
	return &Client{base: strings.TrimSuffix(addr, "/"), hc: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}, nil
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("peer daemon at %s: %w", c.base, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, httpx.DecodeError(resp, service, errorKind)
	}
	return resp, nil
}

// service names the daemon in errors.
const service = "peer daemon"

// errorKind maps an error answer of the daemon (or an error event of a
// pull, with status 0) to its sentinel.
func errorKind(status int, code string) error {
	switch {
	case status == http.StatusNotFound || code == ctlwire.CodeNotFound:
		return ErrNotFound
	case status == http.StatusBadRequest || code == ctlwire.CodeBadRequest:
		return ErrBadRequest
	}
	return ErrDaemon
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(v); err != nil {
		return fmt.Errorf("%w: decode %s: %w", ErrDaemon, path, err)
	}
	return nil
}

// Node describes the daemon.
func (c *Client) Node(ctx context.Context) (ctlwire.NodeInfo, error) {
	var n ctlwire.NodeInfo
	return n, c.getJSON(ctx, ctlwire.PathNode, &n)
}

// Blobs lists the blobs the daemon holds.
func (c *Client) Blobs(ctx context.Context) ([]ctlwire.Blob, error) {
	var b []ctlwire.Blob
	return b, c.getJSON(ctx, ctlwire.PathBlobs, &b)
}

// Remove drops a blob from the daemon.
func (c *Client) Remove(ctx context.Context, d chunker.Digest) error {
	resp, err := c.do(ctx, http.MethodDelete, ctlwire.BlobPath(d), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Pull asks the daemon to fetch d through the swarm and waits for it,
// calling progress with each update.
func (c *Client) Pull(ctx context.Context, d chunker.Digest, progress func(ctlwire.Progress)) (ctlwire.Blob, error) {
	resp, err := c.do(ctx, http.MethodPost, ctlwire.PathPull, ctlwire.PullRequest{Digest: d})
	if err != nil {
		return ctlwire.Blob{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var ev ctlwire.PullEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return ctlwire.Blob{}, fmt.Errorf("%w: bad progress line: %w", ErrDaemon, err)
		}
		switch {
		case ev.Error != nil:
			return ctlwire.Blob{}, &APIError{
				Service: service, Method: resp.Request.Method, Path: resp.Request.URL.Path,
				Code: ev.Error.Code, Message: ev.Error.Error, Kind: errorKind(0, ev.Error.Code),
			}
		case ev.Done != nil:
			return *ev.Done, nil
		case ev.Progress != nil && progress != nil:
			progress(*ev.Progress)
		}
	}
	if err := sc.Err(); err != nil {
		return ctlwire.Blob{}, fmt.Errorf("pull %s: %w", d, err)
	}
	return ctlwire.Blob{}, fmt.Errorf("%w: pull %s: the daemon closed the stream without a result", ErrDaemon, d)
}

// Open streams a complete blob's bytes; size is its length.
func (c *Client) Open(ctx context.Context, d chunker.Digest) (rc io.ReadCloser, size int64, err error) {
	resp, err := c.do(ctx, http.MethodGet, ctlwire.DataPath(d), nil)
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}
