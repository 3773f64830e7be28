package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pd/p2pd/chunker"
	"github.com/p2pd/p2pd/chunker/chunkertest"
)

func run(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var errb bytes.Buffer
	code, out := runTo(context.Background(), stdin, &errb, args...)
	return code, out, errb.String()
}

// runTo runs p2pctl with stderr going to w (a terminal, say) and returns
// its exit code and stdout.
func runTo(ctx context.Context, stdin []byte, stderr io.Writer, args ...string) (int, string) {
	var out bytes.Buffer
	code := Main(ctx, args, bytes.NewReader(stdin), &out, stderr)
	return code, out.String()
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChunkAndVerify(t *testing.T) {
	data := chunkertest.Bytes(1, 3<<20)
	file := writeFile(t, "blob", data)
	bin := filepath.Join(t.TempDir(), "blob.p2pm")

	code, out, errs := run(t, nil, "chunk", "--min-size", "64KiB", "--avg-size", "256KiB", "--max-size", "1MiB", "-o", bin, file)
	if code != ExitOK {
		t.Fatalf("chunk: exit %d: %s", code, errs)
	}
	for _, want := range []string{chunker.Sum(data).String(), "chunks", "3.00 MiB"} {
		if !strings.Contains(out, want) {
			t.Fatalf("chunk output lacks %q:\n%s", want, out)
		}
	}
	code, js, _ := run(t, nil, "chunk", "--json", "--avg-size", "256KiB", "--min-size", "64KiB", "--max-size", "1MiB", file)
	var m chunker.Manifest
	if err := json.Unmarshal([]byte(js), &m); code != ExitOK || err != nil || m.Digest != chunker.Sum(data) {
		t.Fatalf("chunk --json: exit %d, %v", code, err)
	}
	jsonManifest := writeFile(t, "m.json", []byte(js))

	// Reading from stdin gives the same manifest.
	_, js2, _ := run(t, data, "chunk", "--json", "--avg-size", "256KiB", "--min-size", "64KiB", "--max-size", "1MiB", "-")
	if js2 != js {
		t.Fatal("chunk of stdin differs from chunk of the file")
	}

	corrupt := bytes.Clone(data)
	corrupt[len(corrupt)-10] ^= 1
	binBytes, _ := os.ReadFile(bin)
	tests := []struct {
		name     string
		file     string
		manifest string
		code     int
	}{
		{"binary manifest", file, bin, ExitOK},
		{"json manifest", file, jsonManifest, ExitOK},
		{"corrupt data", writeFile(t, "bad", corrupt), bin, ExitMismatch},
		{"short data", writeFile(t, "short", data[:1<<20]), bin, ExitMismatch},
		{"truncated manifest", file, writeFile(t, "trunc.p2pm", binBytes[:len(binBytes)-3]), ExitBadInput},
		{"garbage manifest", file, writeFile(t, "junk", []byte("not a manifest")), ExitBadInput},
		{"missing file", filepath.Join(t.TempDir(), "nope"), bin, ExitError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, nil, "verify", tc.file, tc.manifest)
			if code != tc.code {
				t.Fatalf("verify: exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errs)
			}
		})
	}
	code, out, _ = run(t, nil, "verify", "--json", writeFile(t, "bad2", corrupt), bin)
	if code != ExitMismatch || !strings.Contains(out, `"exit_code":3`) {
		t.Fatalf("verify --json of corrupt data: exit %d, %s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	cfg := writeFile(t, "c.yaml", []byte("chunker:\n  avg_size: 3000\n"))
	unknown := writeFile(t, "u.yaml", []byte("chunkr: {}\n"))
	tests := []struct {
		name string
		args []string
	}{
		{"no args", []string{"chunk"}},
		{"bad flag", []string{"chunk", "--nope", "x"}},
		{"bad size", []string{"chunk", "--avg-size", "lots", "x"}},
		{"invalid chunk sizes", []string{"chunk", "--min-size", "2MiB", "x"}},
		{"config not power of two", []string{"chunk", "--config", cfg, "x"}},
		{"config unknown key", []string{"chunk", "--config", unknown, "x"}},
		{"bench rounds", []string{"bench", "chunker", "--rounds", "0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, errs := run(t, nil, tc.args...); code != ExitUsage {
				t.Fatalf("exit %d, want %d (%s)", code, ExitUsage, errs)
			}
		})
	}
}

func TestConfigThenFlags(t *testing.T) {
	cfg := writeFile(t, "c.yaml", []byte("chunker:\n  min_size: 65536\n  avg_size: 262144\n  max_size: 1048576\n"))
	file := writeFile(t, "blob", chunkertest.Bytes(2, 2<<20))
	_, js, _ := run(t, nil, "chunk", "--json", "--config", cfg, file)
	_, js2, _ := run(t, nil, "chunk", "--json", "--config", cfg, "--max-size", "2MiB", file)
	var a, b chunker.Manifest
	json.Unmarshal([]byte(js), &a)
	json.Unmarshal([]byte(js2), &b)
	if a.AvgSize != 256<<10 || b.MaxSize != 2<<20 || b.AvgSize != 256<<10 {
		t.Fatalf("config/flag precedence: file gave %d/%d, file+flag gave %d/%d", a.AvgSize, a.MaxSize, b.AvgSize, b.MaxSize)
	}
}

func TestBenchChunkerJSON(t *testing.T) {
	code, out, errs := run(t, nil, "bench", "chunker", "--size", "8MiB", "--rounds", "1", "--json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"chunk_mbps", "sha256_mbps", "peak_rss_bytes", "ratio", "digest", "chunks"} {
		if v, ok := res[k]; !ok || v == 0.0 {
			t.Errorf("bench --json: key %q missing or zero in %v", k, res)
		}
	}
}

func TestHelpMentionsExitCodes(t *testing.T) {
	code, out, _ := run(t, nil, "--help")
	if code != ExitOK || !strings.Contains(out, "Exit codes") || !strings.Contains(out, "verify") {
		t.Fatalf("--help: exit %d\n%s", code, out)
	}
}
