package originclient

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/internal/httpx/httpxtest"
)

// FuzzResponses feeds arbitrary origin answers (status, body) to every
// call of the client: it returns a value or an error, never panics, and
// an answer that contradicts the request (a manifest of another blob, a
// push result for other bytes) is an error.
func FuzzResponses(f *testing.F) {
	data := []byte("pushed bytes")
	d := chunker.Sum(data)
	ch, err := chunker.New(chunker.Config{})
	if err != nil {
		f.Fatal(err)
	}
	m, err := ch.Split(context.Background(), bytes.NewReader(data), func(chunker.Chunk, []byte) error { return nil })
	if err != nil {
		f.Fatal(err)
	}
	enc, err := m.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint8(0), enc)
	f.Add(uint8(0), []byte(`{"digest":"`+d.String()+`","manifest_digest":"`+d.String()+`","size":12,"chunks":1}`))
	f.Add(uint8(1), []byte(`{"blobs":[{"digest":"sha256:00"}]}`))
	f.Add(uint8(2), []byte(`{"error":"x","code":"DIGEST_MISMATCH"}`))
	f.Add(uint8(3), []byte(`{"error":"no","code":"UNAUTHORIZED"}`))
	statuses := []int{200, 201, 400, 401, 403, 404, 413, 416, 500, 507}
	f.Fuzz(func(t *testing.T, st uint8, body []byte) {
		status := statuses[int(st)%len(statuses)]
		c, err := New("http://origin", WithHTTPClient(&http.Client{Transport: httpxtest.Canned{Status: status, Body: body}}))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if res, err := c.Push(ctx, bytes.NewReader(data), PushOptions{ExpectedDigest: &d, Size: int64(len(data))}); err == nil && res.Digest != d {
			t.Fatalf("Push accepted a result for %s", res.Digest)
		}
		c.Stat(ctx, d)
		c.List(ctx)
		if got, err := c.Manifest(ctx, d); err == nil && got.Digest != d {
			t.Fatalf("Manifest accepted a manifest of %s", got.Digest)
		}
		if rc, err := c.Fetch(ctx, d, 0, -1); err == nil {
			io.Copy(io.Discard, rc)
			rc.Close()
		}
	})
}
