// Package upstream is the origin's client of real container registries:
// it resolves tags and fetches manifests (with a TTL cache) and streams
// layers, through google/go-containerregistry, which speaks the
// distribution API and its anonymous, basic and bearer-token
// authentication.
//
// Registries are known by the name clients use for them (the ns parameter
// containerd adds to mirror requests, "docker.io", "ghcr.io",
// "registry.example:5000"), each mapped to an endpoint, credentials and an
// optional repository prefix. Errors are never cached: a failed fetch is
// tried again by the next request.
package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/p2pd/p2pd/chunker"
)

// Errors, matched with errors.Is.
var (
	ErrBadConfig       = errors.New("upstream: invalid config")
	ErrUnknownRegistry = errors.New("no upstream registry configured under that name")
	ErrNotFound        = errors.New("upstream has no such manifest or blob")
	ErrDenied          = errors.New("upstream refused the credentials")
	ErrUnavailable     = errors.New("upstream unavailable")
	ErrBadReference    = errors.New("bad repository or reference")
	ErrTooLarge        = errors.New("manifest over the size limit")
)

// Defaults.
const (
	DefaultManifestTTL  = time.Minute
	DefaultTimeout      = 30 * time.Second
	DefaultCacheEntries = 4096
	DefaultMaxManifest  = 4 << 20
)

// Registry is one upstream registry.
type Registry struct {
	// Name is the registry as clients name it, and as containerd's ns
	// parameter gives it: "docker.io", "registry.example:5000".
	Name string `yaml:"name" json:"name"`
	// Endpoint is the registry's base URL (default "https://" + Name;
	// registry-1.docker.io for docker.io). http:// is allowed.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Username and Password, if set, are presented to the registry
	// (basic auth, or to its token service for a bearer token). Empty
	// means anonymous.
	Username string `yaml:"username" json:"username"`
	Password string `yaml:"password" json:"-"`
	// RepositoryPrefix is prepended to every repository name ("mirror/"
	// maps app to mirror/app upstream).
	RepositoryPrefix string `yaml:"repository_prefix" json:"repository_prefix"`
}

// Config configures the upstream client.
type Config struct {
	// Registries are the upstreams; an image names one by Registry.Name.
	Registries []Registry `yaml:"registries"`
	// Default is the Name of the registry used when a request names none
	// (default: the first).
	Default string `yaml:"default"`
	// ManifestTTL is how long a tag's manifest is served from the cache
	// before it is resolved again (default 1m). A manifest fetched by
	// digest never changes and stays cached until evicted.
	ManifestTTL time.Duration `yaml:"manifest_ttl"`
	// Timeout bounds a manifest fetch (default 30s). Layer downloads are
	// bounded by their caller's context only.
	Timeout time.Duration `yaml:"timeout"`
	// CacheEntries bounds the manifest cache (default 4096).
	CacheEntries int `yaml:"cache_entries"`
	// MaxManifestSize bounds a manifest in bytes (default 4 MiB).
	MaxManifestSize int64 `yaml:"max_manifest_size"`
}

// WithDefaults returns c with zero fields replaced by their defaults.
func (c Config) WithDefaults() Config {
	if c.ManifestTTL == 0 {
		c.ManifestTTL = DefaultManifestTTL
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CacheEntries == 0 {
		c.CacheEntries = DefaultCacheEntries
	}
	if c.MaxManifestSize == 0 {
		c.MaxManifestSize = DefaultMaxManifest
	}
	if c.Default == "" && len(c.Registries) > 0 {
		c.Default = c.Registries[0].Name
	}
	return c
}

// Validate reports why c (after defaults) is unusable, wrapping
// ErrBadConfig.
func (c Config) Validate() error {
	c = c.WithDefaults()
	seen := map[string]bool{}
	for i, r := range c.Registries {
		if r.Name == "" {
			return fmt.Errorf("%w: registries[%d] has no name", ErrBadConfig, i)
		}
		if seen[r.Name] {
			return fmt.Errorf("%w: registry %q is configured twice", ErrBadConfig, r.Name)
		}
		seen[r.Name] = true
		if _, err := r.endpoint(); err != nil {
			return fmt.Errorf("%w: registry %q: %w", ErrBadConfig, r.Name, err)
		}
	}
	switch {
	case c.Default != "" && !seen[c.Default]:
		return fmt.Errorf("%w: default registry %q is not configured", ErrBadConfig, c.Default)
	case c.ManifestTTL < 0, c.Timeout < 0, c.CacheEntries < 0, c.MaxManifestSize < 0:
		return fmt.Errorf("%w: manifest_ttl, timeout, cache_entries and max_manifest_size may not be negative", ErrBadConfig)
	}
	return nil
}

// endpoint returns the registry to talk to for r.
func (r Registry) endpoint() (name.Registry, error) {
	ep := r.Endpoint
	if ep == "" {
		ep = "https://" + r.Name
		if r.Name == name.DefaultRegistry || r.Name == "index.docker.io" {
			return name.NewRegistry(name.DefaultRegistry)
		}
	}
	u, err := url.Parse(ep)
	if err != nil {
		return name.Registry{}, fmt.Errorf("endpoint %q: %w", ep, err)
	}
	if u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return name.Registry{}, fmt.Errorf("endpoint %q: want scheme://host[:port]", ep)
	}
	switch u.Scheme {
	case "https":
		return name.NewRegistry(u.Host, name.StrictValidation)
	case "http":
		return name.NewRegistry(u.Host, name.Insecure)
	}
	return name.Registry{}, fmt.Errorf("endpoint %q: scheme must be http or https", ep)
}

// Manifest is a manifest or index as upstream serves it.
type Manifest struct {
	MediaType string
	// Digest is "sha256:<hex>" of Body.
	Digest string
	Body   []byte
}

// Client fetches from the upstream registries. It is safe for concurrent
// use.
type Client struct {
	cfg       Config
	regs      map[string]resolved
	transport http.RoundTripper
	log       *slog.Logger

	mu    sync.Mutex
	cache map[string]cacheEntry
}

type resolved struct {
	reg  Registry
	ep   name.Registry
	auth authn.Authenticator
}

type cacheEntry struct {
	m       *Manifest
	expires time.Time // zero: never (fetched by digest)
}

// Deps are the client's collaborators, all optional.
type Deps struct {
	// Transport carries the requests (default http.DefaultTransport).
	Transport http.RoundTripper
	// Logger receives the client's logs (default: discarded).
	Logger *slog.Logger
}

// New returns a client for cfg (defaults applied).
func New(cfg Config, deps Deps) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Transport == nil {
		deps.Transport = http.DefaultTransport
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, regs: map[string]resolved{}, transport: deps.Transport, log: deps.Logger, cache: map[string]cacheEntry{}}
	for _, r := range cfg.Registries {
		ep, _ := r.endpoint() // checked by Validate
		var auth authn.Authenticator = authn.Anonymous
		if r.Username != "" || r.Password != "" {
			auth = authn.FromConfig(authn.AuthConfig{Username: r.Username, Password: r.Password})
		}
		c.regs[r.Name] = resolved{reg: r, ep: ep, auth: auth}
	}
	return c, nil
}

// Config returns the configuration in use, defaults applied.
func (c *Client) Config() Config { return c.cfg }

// Configured reports whether any upstream registry is configured.
func (c *Client) Configured() bool { return len(c.regs) > 0 }

func (c *Client) lookup(registry string) (resolved, error) {
	if registry == "" {
		registry = c.cfg.Default
	}
	r, ok := c.regs[registry]
	if !ok {
		return r, fmt.Errorf("%w: %q", ErrUnknownRegistry, registry)
	}
	return r, nil
}

func (c *Client) options(ctx context.Context, r resolved) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(r.auth),
		remote.WithTransport(c.transport),
		remote.WithUserAgent("p2pd-origin"),
		// A down upstream should fail a pull in seconds, not minutes.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 2}),
	}
}

// IsDigest reports whether ref is a digest ("sha256:<64 hex>") rather
// than a tag.
func IsDigest(ref string) bool {
	_, err := chunker.ParseDigest(ref)
	return err == nil
}

func (c *Client) reference(r resolved, repo, ref string) (name.Reference, error) {
	repo = r.reg.RepositoryPrefix + repo
	sep := ":"
	if IsDigest(ref) {
		sep = "@"
	}
	// Parsed against the endpoint, so "app" is not rewritten to
	// "library/app" unless the endpoint is Docker Hub.
	s := r.ep.Name() + "/" + repo + sep + ref
	opts := []name.Option{name.StrictValidation}
	if r.ep.Scheme() == "http" {
		opts = append(opts, name.Insecure)
	}
	parsed, err := name.ParseReference(s, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	return parsed, nil
}

// Manifest returns the manifest (or index) repo:ref of registry (empty:
// the default registry), from the cache if it holds a fresh copy. ref is
// a tag or a digest; a manifest fetched by digest is checked against it.
func (c *Client) Manifest(ctx context.Context, registry, repo, ref string) (*Manifest, error) {
	r, err := c.lookup(registry)
	if err != nil {
		return nil, err
	}
	nref, err := c.reference(r, repo, ref)
	if err != nil {
		return nil, err
	}
	key := r.reg.Name + "/" + repo + "|" + ref
	if m := c.cached(key); m != nil {
		return m, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	desc, err := remote.Get(nref, c.options(ctx, r)...)
	if err != nil {
		return nil, classify(err, "manifest "+nref.String())
	}
	if int64(len(desc.Manifest)) > c.cfg.MaxManifestSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrTooLarge, nref, len(desc.Manifest), c.cfg.MaxManifestSize)
	}
	sum := sha256.Sum256(desc.Manifest)
	m := &Manifest{MediaType: string(desc.MediaType), Digest: chunker.Digest(sum).String(), Body: desc.Manifest}
	if IsDigest(ref) && m.Digest != ref {
		return nil, fmt.Errorf("%w: manifest %s hashes to %s", ErrUnavailable, nref, m.Digest)
	}
	c.store(key, m, !IsDigest(ref))
	// The same manifest by digest never changes.
	c.store(r.reg.Name+"/"+repo+"|"+m.Digest, m, false)
	return m, nil
}

func (c *Client) cached(key string) *Manifest {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[key]
	if !ok {
		return nil
	}
	if !e.expires.IsZero() && time.Now().After(e.expires) {
		delete(c.cache, key)
		return nil
	}
	return e.m
}

func (c *Client) store(key string, m *Manifest, expires bool) {
	e := cacheEntry{m: m}
	if expires {
		e.expires = time.Now().Add(c.cfg.ManifestTTL)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.cache { // over the bound: drop any entry
		if len(c.cache) < c.cfg.CacheEntries {
			break
		}
		delete(c.cache, k)
	}
	c.cache[key] = e
}

// Blob opens the blob (layer or config) digest of repo in registry and
// returns its bytes as upstream sends them, and its size if upstream
// says (-1 if not). The caller verifies the digest and closes the reader.
func (c *Client) Blob(ctx context.Context, registry, repo, digest string) (io.ReadCloser, int64, error) {
	r, err := c.lookup(registry)
	if err != nil {
		return nil, 0, err
	}
	if !IsDigest(digest) {
		return nil, 0, fmt.Errorf("%w: %q is not a sha256 digest", ErrBadReference, digest)
	}
	nref, err := c.reference(r, repo, digest)
	if err != nil {
		return nil, 0, err
	}
	d, ok := nref.(name.Digest)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %q is not a digest reference", ErrBadReference, nref)
	}
	l, err := remote.Layer(d, c.options(ctx, r)...)
	if err != nil {
		return nil, 0, classify(err, "blob "+nref.String())
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, 0, classify(err, "blob "+nref.String())
	}
	return &classifyReader{rc: rc, what: "blob " + nref.String()}, -1, nil
}

// classifyReader maps a read error of a blob body to the package's errors.
type classifyReader struct {
	rc   io.ReadCloser
	what string
}

func (r *classifyReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err != nil && err != io.EOF {
		err = classify(err, r.what)
	}
	return n, err
}

func (r *classifyReader) Close() error { return r.rc.Close() }

// classify wraps err of fetching what in ErrNotFound, ErrDenied or
// ErrUnavailable.
func classify(err error, what string) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%s: %w: %w", what, ErrDenied, err)
		}
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
}

// Tags is one page of a repository's tags, in the registry's (lexical)
// order.
type Tags struct {
	Tags []string
	// More is set if the registry has tags after the last of Tags (it
	// sent a Link header to the next page).
	More bool
}

// MaxTagsSize bounds the body of a tag list.
const MaxTagsSize = 4 << 20

// Tags returns the tags of repo in registry: at most n (n <= 0: as many
// as the registry sends in one answer), those after last if last is not
// empty. n and last go to the registry as the distribution spec's
// pagination parameters. Tag lists are not cached.
//
// go-containerregistry's Lister cannot send last, so the request is made
// here, through go-containerregistry's transport, which negotiates the
// registry's authentication (anonymous, basic or bearer) and maps its
// errors.
func (c *Client) Tags(ctx context.Context, registry, repo string, n int, last string) (*Tags, error) {
	r, err := c.lookup(registry)
	if err != nil {
		return nil, err
	}
	nref, err := c.reference(r, repo, "latest")
	if err != nil {
		return nil, err
	}
	what := "tags of " + nref.Context().String()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	rt, err := transport.NewWithContext(ctx, nref.Context().Registry, r.auth, transport.NewUserAgent(c.transport, "p2pd-origin"),
		[]string{nref.Context().Scope(transport.PullScope)})
	if err != nil {
		return nil, classify(err, what)
	}
	q := url.Values{}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	if last != "" {
		q.Set("last", last)
	}
	u := url.URL{Scheme: nref.Context().Scheme(), Host: nref.Context().RegistryStr(),
		Path: "/v2/" + nref.Context().RepositoryStr() + "/tags/list", RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadReference, err)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return nil, classify(err, what)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return nil, classify(err, what)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxTagsSize+1))
	if err != nil {
		return nil, classify(err, what)
	}
	tags, err := DecodeTags(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &Tags{Tags: tags, More: strings.Contains(resp.Header.Get("Link"), "next")}, nil
}

// tagRE is the distribution spec's tag.
var tagRE = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// IsTag reports whether s is a valid tag, as the distribution spec has it.
func IsTag(s string) bool { return tagRE.MatchString(s) }

// DecodeTags decodes a registry's tag list body (at most MaxTagsSize
// bytes) into its tags, each checked to be a valid tag; none is an empty
// list, not nil.
func DecodeTags(b []byte) ([]string, error) {
	if len(b) > MaxTagsSize {
		return nil, fmt.Errorf("%w: the tag list is over %d bytes", ErrTooLarge, MaxTagsSize)
	}
	var body struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("%w: decoding the tag list: %w", ErrUnavailable, err)
	}
	for _, t := range body.Tags {
		if !IsTag(t) {
			return nil, fmt.Errorf("%w: the tag list holds %q, which is no tag", ErrUnavailable, t)
		}
	}
	if body.Tags == nil {
		body.Tags = []string{}
	}
	return body.Tags, nil
}
