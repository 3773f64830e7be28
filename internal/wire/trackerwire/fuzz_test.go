package trackerwire

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzAnnounceRequest feeds arbitrary bytes to the request decoder and
// Validate: it must never panic, and whatever it accepts must survive a
// round trip through JSON and still be valid.
func FuzzAnnounceRequest(f *testing.F) {
	valid, _ := json.Marshal(validRequest())
	f.Add(valid)
	f.Add([]byte(`{"blob":"sha256:00","delta":{"added":[4294967295]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseAnnounceRequest(b)
		if err != nil {
			if req != nil {
				t.Fatalf("error %v with a request", err)
			}
			return
		}
		if err := req.Validate(); err != nil {
			t.Fatalf("accepted request fails Validate: %v", err)
		}
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		again, err := ParseAnnounceRequest(enc)
		if err != nil {
			t.Fatalf("re-encoded request rejected: %v\n%s", err, enc)
		}
		if again.Bitfield != nil && again.Bitfield.Count() > int(again.NumChunks) {
			t.Fatalf("bitfield counts %d of %d chunks", again.Bitfield.Count(), again.NumChunks)
		}
	})
}

// TestFuzzCorpus checks that the committed seeds named valid-* are accepted
// and the others rejected, so the corpus keeps covering both paths.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzAnnounceRequest")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) < 10 {
		t.Fatalf("only %d seeds", len(ents))
	}
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		header, rest, _ := strings.Cut(string(raw), "\n")
		lit, ok := strings.CutPrefix(strings.TrimSpace(rest), "[]byte(")
		lit, ok2 := strings.CutSuffix(lit, ")")
		if header != "go test fuzz v1" || !ok || !ok2 {
			t.Fatalf("%s: not a corpus file", e.Name())
		}
		body, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		_, err = ParseAnnounceRequest([]byte(body))
		if want := strings.HasPrefix(e.Name(), "valid-"); want != (err == nil) {
			t.Errorf("%s: Parse = %v", e.Name(), err)
		}
	}
}
