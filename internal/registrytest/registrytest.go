// Package registrytest runs a real container registry for tests: the
// distribution project's registry binary (github.com/distribution/
// distribution/v3/cmd/registry, installed by scripts/test-deps.sh), on a
// loopback port with its storage in a temporary directory, optionally
// behind basic auth. It also builds and pushes test images with
// go-containerregistry.
package registrytest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary returns the path of the registry binary: $P2PD_REGISTRY_BIN,
// "registry" in PATH, or $(go env GOPATH)/bin/registry.
func Binary() (string, error) {
	if p := os.Getenv("P2PD_REGISTRY_BIN"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("registry"); err == nil {
		return p, nil
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "registry")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("registrytest: no registry binary: run scripts/test-deps.sh (go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2)")
}

// Options configure a registry.
type Options struct {
	// Username and Password, if set, protect the registry with basic
	// auth (htpasswd), or with bearer tokens if Token is set.
	Username, Password string
	// Token makes the registry demand bearer tokens from a token service
	// of the test's own, which issues them for Username and Password.
	Token bool
}

// Registry is a running registry.
type Registry struct {
	// Host is its "127.0.0.1:port", URL "http://" + Host.
	Host, URL string
	// Dir is its storage root.
	Dir string
	cmd *exec.Cmd
	mu  sync.Mutex
	log strings.Builder
}

var listening = regexp.MustCompile(`listening on (\S+?)(,|"|\s|$)`)

// Start runs a registry until the test ends.
func Start(t testing.TB, o Options) *Registry {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &Registry{Dir: filepath.Join(dir, "storage")}
	cfg := fmt.Sprintf(`version: 0.1
log: {level: info, formatter: text, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
  cache: {blobdescriptor: inmemory}
http:
  addr: 127.0.0.1:0
`, r.Dir)
	if o.Token {
		ts := startTokenServer(t, dir, o.Username, o.Password)
		cfg += fmt.Sprintf("auth:\n  token: {realm: %q, service: %s, issuer: %s, rootcertbundle: %s}\n",
			ts.url, tokenService, tokenIssuer, ts.certPath)
	} else if o.Username != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(o.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(o.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd: {realm: registrytest, path: %s}\n", htpasswd)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(bin, "serve", cfgPath)
	r.cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.cmd.Stdout = io.Discard
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("registrytest: starting %s: %v", bin, err)
	}
	addr := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			if r.log.Len() < 1<<20 && !strings.Contains(line, `msg="response completed"`) {
				r.log.WriteString(line + "\n")
			}
			r.mu.Unlock()
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		<-logDone
		if t.Failed() {
			t.Logf("registry log:\n%s", r.Log())
		}
	})
	select {
	case a := <-addr:
		r.Host = a
	case <-logDone:
		t.Fatalf("registrytest: registry exited before listening:\n%s", r.Log())
	case <-time.After(30 * time.Second):
		t.Fatalf("registrytest: registry not listening after 30s:\n%s", r.Log())
	}
	r.URL = "http://" + r.Host
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return r
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("registrytest: /v2/ not answering: %v\n%s", err, r.Log())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Log returns the registry's log so far.
func (r *Registry) Log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

// BlobPath returns the file the registry stores blob digest in.
func (r *Registry) BlobPath(digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	return filepath.Join(r.Dir, "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data")
}
