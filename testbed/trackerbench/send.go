package trackerbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/p2pd/p2pd/internal/wire/trackerwire"
	"github.com/p2pd/p2pd/tracker/trackerclient"
)

// Clients the load generator can announce with.
const (
	// ClientRaw writes HTTP/1.1 requests on keep-alive connections
	// itself and reads the answers without decoding them in full: the
	// cheapest load generator, leaving the most CPU to the tracker.
	ClientRaw = "raw"
	// ClientTracker uses trackerclient.Client, as peers do: validation,
	// encoding/json both ways, net/http.
	ClientTracker = "trackerclient"
)

// answer is what a sender learned from one announce.
type answer struct {
	needFull bool
	peers    int // handed out
}

// sender sends announces on one connection (or pool); one goroutine
// uses it.
type sender interface {
	send(ctx context.Context, f *fleet, a *announce) (answer, error)
	close()
}

// errStatus is a non-200 answer.
type errStatus struct {
	code int
	body string
}

func (e *errStatus) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.body) }

// rawSender speaks HTTP/1.1 on one keep-alive connection.
type rawSender struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	stop    func() bool // unregisters the conn's context.AfterFunc
	r       *bufio.Reader
	head    []byte // the request line and constant headers
	req     []byte // the request body
	buf     []byte // the request being written
	body    []byte // the answer's body
}

func newRawSender(addr string, timeout time.Duration) *rawSender {
	return &rawSender{
		addr: addr, timeout: timeout,
		head: fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: p2pd-trackerbench\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: ",
			trackerwire.PathAnnounce, addr),
	}
}

var needFullField = []byte(`"need_full":true`)

// scan reads what the generator needs from an answer's body without
// decoding it: whether it asks for the full bitfield (such an answer
// hands out no peers, so it is short), and the number of peers handed
// out, each a JSON object (the fleet's strings have no braces).
func scan(body []byte) answer {
	if len(body) < 128 && bytes.Contains(body, needFullField) {
		return answer{needFull: true}
	}
	return answer{peers: max(bytes.Count(body, []byte("{"))-1, 0)}
}

func (s *rawSender) send(ctx context.Context, f *fleet, a *announce) (answer, error) {
	if s.conn == nil {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", s.addr)
		if err != nil {
			return answer{}, err
		}
		s.conn, s.r = c, bufio.NewReaderSize(c, 16<<10)
		// When ctx ends, the request under way fails at once.
		s.stop = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	}
	s.req = f.appendJSON(s.req[:0], a)
	b := append(s.buf[:0], s.head...)
	b = strconv.AppendInt(b, int64(len(s.req)), 10)
	b = append(b, "\r\n\r\n"...)
	s.buf = append(b, s.req...)
	if err := s.roundTrip(ctx); err != nil {
		s.close()
		return answer{}, err
	}
	return scan(s.body), nil
}

// roundTrip writes s.buf and reads the answer into s.body.
func (s *rawSender) roundTrip(ctx context.Context) error {
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := s.conn.SetDeadline(deadline); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil { // it may have ended before the deadline was set
		return err
	}
	if _, err := s.conn.Write(s.buf); err != nil {
		return err
	}
	line, err := s.r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return fmt.Errorf("bad status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return fmt.Errorf("bad status line %q", line)
	}
	length, keep := -1, true
	for {
		line, err := s.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keep = false
		}
	}
	if length < 0 {
		return errors.New("answer without Content-Length")
	}
	if cap(s.body) < length {
		s.body = make([]byte, length)
	}
	s.body = s.body[:length]
	if _, err := io.ReadFull(s.r, s.body); err != nil {
		return err
	}
	if !keep {
		s.close()
	}
	if code != http.StatusOK {
		return &errStatus{code: code, body: string(bytes.TrimSpace(s.body))}
	}
	return nil
}

func (s *rawSender) close() {
	if s.conn != nil {
		s.stop()
		s.conn.Close()
		s.conn, s.r, s.stop = nil, nil, nil
	}
}

// clientSender announces with trackerclient, on its own connection.
type clientSender struct {
	c *trackerclient.Client
}

func newClientSender(url string, timeout time.Duration) (*clientSender, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 1
	c, err := trackerclient.New(url, trackerclient.WithHTTPClient(&http.Client{Transport: tr, Timeout: timeout}),
		trackerclient.WithUserAgent("p2pd-trackerbench"))
	if err != nil {
		return nil, err
	}
	return &clientSender{c: c}, nil
}

func (s *clientSender) send(ctx context.Context, f *fleet, a *announce) (answer, error) {
	resp, err := s.c.Announce(ctx, f.request(a))
	if err != nil {
		return answer{}, err
	}
	return answer{needFull: resp.NeedFull, peers: len(resp.Peers)}, nil
}

func (s *clientSender) close() { s.c.CloseIdleConnections() }
