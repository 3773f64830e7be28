package peerwire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func mustFrame(t testing.TB, m Message) []byte {
	t.Helper()
	b, err := AppendFrame(nil, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// header returns a frame header: length prefix and type byte.
func header(length uint32, ty Type) []byte {
	return append(be.AppendUint32(nil, length), byte(ty))
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecodeErrors(t *testing.T) {
	ping := mustFrame(t, Ping{Nonce: 1})
	hello := mustFrame(t, Hello{Version: Version, PeerID: "peer"})
	reject := mustFrame(t, Reject{ReqID: 1, Code: RejectBusy, Reason: "busy"})
	data := mustFrame(t, Data{ReqID: 1, Total: 3, Payload: []byte{1, 2, 3}})
	withLen := func(f []byte, n uint32) []byte { f = bytes.Clone(f); be.PutUint32(f, n); return f }
	// Hello whose string length field says 3 while 4 bytes follow, and so on.
	helloStrLen := func(n uint16) []byte { f := bytes.Clone(hello); be.PutUint16(f[frameHeaderLen+6:], n); return f }

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"length prefix 1 byte", []byte{0}, io.ErrUnexpectedEOF},
		{"length prefix 3 bytes", []byte{0, 0, 0}, io.ErrUnexpectedEOF},
		{"no type byte", []byte{0, 0, 0, 9}, io.ErrUnexpectedEOF},
		{"truncated payload", ping[:len(ping)-1], io.ErrUnexpectedEOF},
		{"payload missing", ping[:frameHeaderLen], io.ErrUnexpectedEOF},
		{"truncated data payload", data[:len(data)-2], io.ErrUnexpectedEOF},
		{"truncated second frame", cat(ping, ping[:6]), io.ErrUnexpectedEOF},
		{"empty frame", []byte{0, 0, 0, 0}, ErrMalformed},
		{"frame over limit by 1", header(MaxFrameSize+1, TypeData), ErrFrameTooLarge},
		{"frame claims 2 GiB", be.AppendUint32(nil, 1<<31), ErrFrameTooLarge},
		{"frame claims 4 GiB", []byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"type 0", cat(header(9, 0), make([]byte, 8)), ErrUnknownType},
		{"type 14", cat(header(9, 14), make([]byte, 8)), ErrUnknownType},
		{"type 255", header(1, 255), ErrUnknownType},
		{"ping trailing byte", cat(withLen(ping, 10), []byte{0}), ErrMalformed},
		{"ping short", withLen(ping, 8)[:12], ErrMalformed},
		{"ping claims 1 MiB", header(1<<20, TypePing), ErrMalformed},
		{"hello trailing byte", cat(withLen(hello, uint32(len(hello)-4+1)), []byte{0}), ErrMalformed},
		{"hello string length short", helloStrLen(3), ErrMalformed},
		{"hello string length long", helloStrLen(5), ErrMalformed},
		{"hello string length over limit", helloStrLen(MaxPeerIDLen + 1), ErrMalformed},
		{"hello too long for a peer ID", cat(header(1+8+MaxPeerIDLen+1, TypeHello), make([]byte, 8+MaxPeerIDLen+1)), ErrMalformed},
		{"reject trailing byte", cat(withLen(reject, uint32(len(reject)-4+1)), []byte{0}), ErrMalformed},
		{"data payload over max", cat(header(1+12+MaxDataPayload+1, TypeData), make([]byte, 12+MaxDataPayload+1)), ErrMalformed},
		{"manifest data over max", cat(header(1+12+MaxDataPayload+1, TypeManifestData), make([]byte, 12+MaxDataPayload+1)), ErrMalformed},
		{"bitfield bits over max", cat(header(1+36+MaxBitfieldBytes+1, TypeBitfield), make([]byte, 36+MaxBitfieldBytes+1)), ErrMalformed},
	}
	for _, tc := range invalidMessages() {
		tests = append(tests, struct {
			name string
			in   []byte
			want error
		}{"invalid " + tc.name, forceFrame(tc.m), ErrMalformed})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(bytes.NewReader(tc.in), 0)
			var err error
			for range 3 {
				if _, err = d.Next(); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if tc.want != io.ErrUnexpectedEOF && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
				t.Fatalf("protocol error %v also claims to be a truncation", err)
			}
			// Sticky.
			if _, err2 := d.Next(); err2 != err {
				t.Fatalf("second Next: %v, want the same error %v", err2, err)
			}
			if cap(d.buf) > MaxFrameSize {
				t.Fatalf("buffer grew to %d bytes", cap(d.buf))
			}
			t.Logf("%v", err)
		})
	}
}

// TestDecodeHugeClaimFailsFast: a length prefix claiming 2 GiB must be
// refused from the 4 bytes alone, without waiting for more input and
// without allocating anything near the claimed size.
func TestDecodeHugeClaimFailsFast(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	go func() { pw.Write(be.AppendUint32(nil, 2<<30)) }() // and then nothing: the pipe stays open
	d := NewDecoder(pr, 0)
	done := make(chan error, 1)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	go func() { _, err := d.Next(); done <- err }()
	select {
	case err := <-done:
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("error %v, want ErrFrameTooLarge", err)
		}
		if !strings.Contains(err.Error(), "2147483648") {
			t.Errorf("error %q does not say the claimed length", err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Fatalf("allocated %d bytes to refuse the frame", grew)
		}
		if cap(d.buf) != 0 {
			t.Fatalf("buffer allocated: %d bytes", cap(d.buf))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next blocked waiting for the body of an oversized frame")
	}
}

// TestDecodeChecksTypeBeforePayload: an unknown type or a size that does
// not fit the type is refused from the header, before the payload arrives.
func TestDecodeChecksTypeBeforePayload(t *testing.T) {
	for _, tc := range []struct {
		hdr  []byte
		want error
	}{
		{header(1000, 200), ErrUnknownType},
		{header(1000, TypePing), ErrMalformed},
		{header(MaxFrameSize, TypeHave), ErrMalformed},
	} {
		pr, pw := io.Pipe()
		go func() { pw.Write(tc.hdr) }()
		done := make(chan error, 1)
		d := NewDecoder(pr, 0)
		go func() { _, err := d.Next(); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, tc.want) {
				t.Errorf("header %x: error %v, want %v", tc.hdr, err, tc.want)
			}
			if cap(d.buf) != 0 {
				t.Errorf("header %x: buffer allocated: %d bytes", tc.hdr, cap(d.buf))
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("header %x: Next waited for the payload", tc.hdr)
		}
		pr.Close()
	}
}

func TestDecoderLimit(t *testing.T) {
	small := mustFrame(t, Data{ReqID: 1, Total: 100, Payload: pattern(100)})
	for _, tc := range []struct {
		max   int
		frame []byte
		want  error
	}{
		{len(small) - 4, small, nil},
		{len(small) - 5, small, ErrFrameTooLarge},
		{100, small, ErrFrameTooLarge},
		{0, mustFrame(t, Data{ReqID: 1, Total: MaxDataPayload, Payload: pattern(MaxDataPayload)}), nil},
		{-1, header(MaxFrameSize+1, TypeData), ErrFrameTooLarge},
		{1 << 30, header(MaxFrameSize+1, TypeData), ErrFrameTooLarge}, // clamped to MaxFrameSize
	} {
		d := NewDecoder(bytes.NewReader(tc.frame), tc.max)
		_, err := d.Next()
		if !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("limit %d, %d-byte frame: error %v, want %v", tc.max, len(tc.frame), err, tc.want)
		}
		if limit := min(max(tc.max, 0), MaxFrameSize); tc.max > 0 && cap(d.buf) > limit {
			t.Errorf("limit %d: buffer grew to %d", tc.max, cap(d.buf))
		}
	}
}

func TestDecodeReadError(t *testing.T) {
	boom := errors.New("boom")
	frame := mustFrame(t, Data{ReqID: 1, Total: 10, Payload: pattern(10)})
	for cut := 0; cut < len(frame); cut++ {
		r := io.MultiReader(bytes.NewReader(frame[:cut]), iotest.ErrReader(boom))
		_, err := NewDecoder(r, 0).Next()
		if !errors.Is(err, boom) {
			t.Errorf("read error after %d bytes: got %v, want it wrapped", cut, err)
		}
	}
	// Every cut of a frame is a truncation, and only the empty input is EOF.
	for cut := 0; cut < len(frame); cut++ {
		_, err := NewDecoder(bytes.NewReader(frame[:cut]), 0).Next()
		if want := io.ErrUnexpectedEOF; cut == 0 && err != io.EOF || cut > 0 && !errors.Is(err, want) {
			t.Errorf("input cut at %d: %v", cut, err)
		}
	}
}

// mixed returns n valid messages of every type, with payloads of varying
// sizes, from a fixed seed. It leaves out the megabyte-sized round-trip
// cases to keep byte-at-a-time reading fast.
func mixed(n int) []Message {
	rng := rand.New(rand.NewPCG(1, 2))
	var all []Message
	for _, tc := range roundTrips() {
		if f, _ := AppendFrame(nil, tc.m); len(f) <= 1<<10 {
			all = append(all, tc.m)
		}
	}
	out := make([]Message, 0, n)
	for i := range n {
		switch i % 4 {
		case 0:
			k := rng.IntN(6 << 10) // some over encodeCopyMax
			out = append(out, Data{ReqID: uint32(i + 1), Offset: uint32(i), Total: uint32(i + k), Payload: pattern(k)})
		case 1:
			out = append(out, Have{Blob: blobA, Index: uint32(i)})
		default:
			out = append(out, all[rng.IntN(len(all))])
		}
	}
	return out
}

func TestDecodeStream(t *testing.T) {
	msgs := mixed(400)
	var stream bytes.Buffer
	for _, m := range msgs {
		if err := Encode(&stream, m); err != nil {
			t.Fatal(err)
		}
	}
	readers := map[string]func() io.Reader{
		"bytes":   func() io.Reader { return bytes.NewReader(stream.Bytes()) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream.Bytes())) },
		"half":    func() io.Reader { return iotest.HalfReader(bytes.NewReader(stream.Bytes())) },
		"dataerr": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(stream.Bytes())) },
		"pipe+bufio": func() io.Reader {
			// Encode straight into a pipe from another goroutine.
			pr, pw := io.Pipe()
			go func() {
				bw := bufio.NewWriterSize(pw, 8<<10)
				for _, m := range msgs {
					if err := Encode(bw, m); err != nil {
						pw.CloseWithError(err)
						return
					}
				}
				pw.CloseWithError(bw.Flush())
			}()
			return bufio.NewReader(pr)
		},
		"pipe onebyte": func() io.Reader {
			pr, pw := io.Pipe()
			go func() {
				_, err := pw.Write(stream.Bytes())
				pw.CloseWithError(err)
			}()
			return iotest.OneByteReader(pr)
		},
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			d := NewDecoder(mk(), 0)
			for i, want := range msgs {
				got, err := d.Next()
				if err != nil {
					t.Fatalf("message %d (%s): %v", i, want.Type(), err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("message %d: got %v, want %v", i, short(got), short(want))
				}
			}
			if m, err := d.Next(); err != io.EOF {
				t.Fatalf("after the last message: %v, %v; want io.EOF", m, err)
			}
		})
	}
}

// TestDecoderReusesBuffer: decoding a Data frame allocates only the
// interface value, however large the payload.
func TestDecoderReusesBuffer(t *testing.T) {
	frame := mustFrame(t, Data{ReqID: 1, Total: MaxDataPayload, Payload: pattern(MaxDataPayload)})
	r := bytes.NewReader(frame)
	d := NewDecoder(r, 0)
	allocs := testing.AllocsPerRun(20, func() {
		r.Reset(frame)
		if _, err := d.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Fatalf("%.1f allocations per Data frame, want at most 1", allocs)
	}
	// A decoded payload aliases the buffer: the next frame overwrites it.
	r2 := bytes.NewReader(cat(mustFrame(t, Data{ReqID: 1, Total: 1, Payload: []byte{1}}), mustFrame(t, Data{ReqID: 1, Total: 1, Payload: []byte{2}})))
	d = NewDecoder(r2, 0)
	m1, _ := d.Next()
	p := m1.(Data).Payload
	if _, err := d.Next(); err != nil {
		t.Fatal(err)
	}
	if p[0] != 2 {
		t.Fatalf("payload of the first frame is %d after the second: buffer not reused", p[0])
	}
}

func TestEncodeWriteErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, m := range []Message{Ping{Nonce: 1}, Data{ReqID: 1, Total: 1 << 20, Payload: pattern(1 << 20)}} {
		for _, limit := range []int64{0, 3, frameHeaderLen + 7, int64(len(mustFrame(t, m)) - 1)} {
			w := &failWriter{n: limit, err: boom}
			if err := Encode(w, m); !errors.Is(err, boom) {
				t.Errorf("%s, writer failing after %d bytes: error %v", m.Type(), limit, err)
			}
		}
	}
	if err := Encode(shortWriter{}, Ping{}); !errors.Is(err, io.ErrShortWrite) {
		t.Errorf("short write: %v", err)
	}
	// Large frames are written as header then payload, small ones at once.
	for _, tc := range []struct {
		m      Message
		writes int
	}{
		{Ping{}, 1},
		{Data{ReqID: 1, Total: encodeCopyMax, Payload: pattern(encodeCopyMax)}, 1},
		{Data{ReqID: 1, Total: encodeCopyMax + 1, Payload: pattern(encodeCopyMax + 1)}, 2},
	} {
		w := &countWriter{}
		if err := Encode(w, tc.m); err != nil || w.writes != tc.writes {
			t.Errorf("%d-byte frame: %d writes, %v; want %d", len(mustFrame(t, tc.m)), w.writes, err, tc.writes)
		}
	}
}

type failWriter struct {
	n   int64
	err error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if int64(len(p)) <= w.n {
		w.n -= int64(len(p))
		return len(p), nil
	}
	n := w.n
	w.n = 0
	return int(n), w.err
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

type countWriter struct{ writes int }

func (w *countWriter) Write(p []byte) (int, error) { w.writes++; return len(p), nil }

func ExampleDecoder() {
	var stream bytes.Buffer
	Encode(&stream, Hello{Version: Version, PeerID: "12D3KooW..."})
	Encode(&stream, Data{ReqID: 7, Offset: 0, Total: 5, Payload: []byte("hello")})
	d := NewDecoder(bufio.NewReader(&stream), 0)
	for {
		m, err := d.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			fmt.Println(err)
			return
		}
		switch m := m.(type) {
		case Hello:
			fmt.Println("hello from", m.PeerID, "compatible:", Compatible(m.Version))
		case Data:
			fmt.Printf("request %d: %q at %d of %d\n", m.ReqID, m.Payload, m.Offset, m.Total)
		}
	}
	// Output:
	// hello from 12D3KooW... compatible: true
	// request 7: "hello" at 0 of 5
}
