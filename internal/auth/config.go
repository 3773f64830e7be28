package auth

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/pnet"

	"github.com/p2pd/p2pd/internal/fsutil"
)

// Config is the security section of every role's YAML configuration.
// Every field is optional; a cluster is closed once its nodes hold a PSK
// and tokens. Secrets are read from files (mode 0600), never written in
// the configuration itself.
type Config struct {
	// PSKFile is the libp2p private network key (swarm.key format): only
	// nodes that hold it can connect to a peer or an origin. QUIC cannot
	// be used with it.
	PSKFile string `yaml:"psk_file,omitempty" json:"psk_file,omitempty"`
	// AnnounceTokenFile, PushTokenFile and AdminTokenFile hold the scoped
	// tokens. A tracker needs the announce token (and the admin token to
	// let admins read it), an origin the push and admin tokens (and the
	// announce token, which members use to read its blobs), a peer or an
	// origin's engine the announce token to sign its announces.
	AnnounceTokenFile string `yaml:"announce_token_file,omitempty" json:"announce_token_file,omitempty"`
	PushTokenFile     string `yaml:"push_token_file,omitempty" json:"push_token_file,omitempty"`
	AdminTokenFile    string `yaml:"admin_token_file,omitempty" json:"admin_token_file,omitempty"`
	// MaxClockSkew bounds how far a signed request's timestamp may be from
	// the server's clock (default 30s). Keep the fleet's clocks in sync.
	MaxClockSkew time.Duration `yaml:"max_clock_skew,omitempty" json:"max_clock_skew,omitempty"`
	// CertFile and KeyFile make the tracker's or origin's HTTP API serve
	// TLS 1.3.
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	// CAFile is trusted, as well as the system's CAs, when this node
	// connects to an https:// tracker or origin.
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
}

// Validate reports a config that cannot be loaded.
func (c Config) Validate() error {
	switch {
	case (c.CertFile == "") != (c.KeyFile == ""):
		return errors.New("security: cert_file and key_file go together")
	case c.MaxClockSkew < 0:
		return fmt.Errorf("security: max_clock_skew %v is negative", c.MaxClockSkew)
	}
	return nil
}

// Credentials are a node's loaded secrets.
type Credentials struct {
	PSK  pnet.PSK
	Keys Keys
	// ServerTLS is set when CertFile and KeyFile are.
	ServerTLS *tls.Config
	// Transport reaches the tracker and origins, trusting CAFile.
	Transport *http.Transport
	// MaxClockSkew is Config.MaxClockSkew.
	MaxClockSkew time.Duration
}

// Load reads every file c names.
func (c Config) Load() (*Credentials, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cr := &Credentials{MaxClockSkew: c.MaxClockSkew}
	var err error
	if c.PSKFile != "" {
		if cr.PSK, err = LoadPSK(c.PSKFile); err != nil {
			return nil, fmt.Errorf("security: psk_file: %w", err)
		}
	}
	for _, t := range []struct {
		path string
		dst  *string
	}{{c.AnnounceTokenFile, &cr.Keys.Announce}, {c.PushTokenFile, &cr.Keys.Push}, {c.AdminTokenFile, &cr.Keys.Admin}} {
		if t.path == "" {
			continue
		}
		if *t.dst, err = LoadToken(t.path); err != nil {
			return nil, fmt.Errorf("security: %w", err)
		}
	}
	if c.CertFile != "" {
		if cr.ServerTLS, err = ServerTLS(c.CertFile, c.KeyFile); err != nil {
			return nil, fmt.Errorf("security: %w", err)
		}
	}
	if cr.Transport, err = ClientTransport(c.CAFile); err != nil {
		return nil, fmt.Errorf("security: ca_file: %w", err)
	}
	return cr, nil
}

// Verifier returns the verifier of cr's tokens (nil if it has none).
func (cr *Credentials) Verifier() *Verifier {
	return NewVerifier(cr.Keys, VerifierOptions{MaxClockSkew: cr.MaxClockSkew})
}

// Client returns an HTTP client that signs with cr's token for scope
// (unsigned if cr has none) over cr's transport.
func (cr *Credentials) Client(scope Scope, timeout time.Duration) *http.Client {
	return Client(cr.Transport, scope, cr.Keys.Get(scope), timeout)
}

// The file names Generate writes in its directory.
const (
	FilePSK        = "swarm.key"
	FileAnnounce   = "announce.token"
	FilePush       = "push.token"
	FileAdmin      = "admin.token"
	FileCA         = "ca.crt"
	FileCAKey      = "ca.key"
	FileServerCert = "server.crt"
	FileServerKey  = "server.key"
)

// DirConfig returns the Config of a directory Generate wrote: the files
// it holds under their standard names.
func DirConfig(dir string) (Config, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Config{}, fmt.Errorf("auth: %w", err)
	}
	var c Config
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{FilePSK, &c.PSKFile}, {FileAnnounce, &c.AnnounceTokenFile}, {FilePush, &c.PushTokenFile}, {FileAdmin, &c.AdminTokenFile},
		{FileCA, &c.CAFile}, {FileServerCert, &c.CertFile}, {FileServerKey, &c.KeyFile},
	} {
		p := filepath.Join(abs, f.name)
		if _, err := os.Stat(p); err == nil {
			*f.dst = p
		}
	}
	if c == (Config{}) {
		return Config{}, fmt.Errorf("auth: %s holds no credentials (make them with p2pd init)", dir)
	}
	return c, nil
}

// GenerateOptions say what Generate makes.
type GenerateOptions struct {
	// Hosts are the names and addresses of the tracker and origins, put in
	// the server certificate. Empty: no CA, no certificate (plain HTTP).
	Hosts []string
	// Validity of the CA and the certificate (default ten years).
	Validity time.Duration
	// Force overwrites existing files; otherwise Generate refuses to.
	Force bool
}

// Generate writes a new set of credentials into dir (created 0700): a
// PSK, the three tokens and, with Hosts, a CA and a server certificate.
// Every file is written atomically with mode 0600 (ca.crt 0644). It
// returns the Config that names them.
func Generate(dir string, o GenerateOptions) (Config, error) {
	if o.Validity <= 0 {
		o.Validity = 10 * 365 * 24 * time.Hour
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Config{}, fmt.Errorf("auth: %w", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return Config{}, fmt.Errorf("auth: %w", err)
	}
	type file struct {
		name string
		perm os.FileMode
		data []byte
	}
	psk, err := GeneratePSK()
	if err != nil {
		return Config{}, err
	}
	files := []file{{FilePSK, 0o600, EncodePSK(psk)}}
	for _, n := range []string{FileAnnounce, FilePush, FileAdmin} {
		t, err := GenerateToken()
		if err != nil {
			return Config{}, err
		}
		files = append(files, file{n, 0o600, []byte(t + "\n")})
	}
	at := func(n string) string { return filepath.Join(abs, n) }
	cfg := Config{PSKFile: at(FilePSK), AnnounceTokenFile: at(FileAnnounce), PushTokenFile: at(FilePush), AdminTokenFile: at(FileAdmin)}
	if len(o.Hosts) > 0 {
		ca, err := NewCA("p2pd cluster CA", o.Validity)
		if err != nil {
			return Config{}, err
		}
		caKey, err := ca.KeyPEM()
		if err != nil {
			return Config{}, err
		}
		cert, key, err := ca.Issue(o.Hosts, o.Validity)
		if err != nil {
			return Config{}, err
		}
		files = append(files, file{FileCA, 0o644, ca.CertPEM()}, file{FileCAKey, 0o600, caKey},
			file{FileServerCert, 0o644, cert}, file{FileServerKey, 0o600, key})
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = at(FileCA), at(FileServerCert), at(FileServerKey)
	}
	if !o.Force {
		for _, f := range files {
			if _, err := os.Lstat(at(f.name)); err == nil {
				return Config{}, fmt.Errorf("auth: %s exists; use another directory, or force to replace it", at(f.name))
			}
		}
	}
	for _, f := range files {
		if err := fsutil.WriteFileAtomic(at(f.name), f.perm, func(w io.Writer) error {
			_, err := w.Write(f.data)
			return err
		}); err != nil {
			return Config{}, fmt.Errorf("auth: %w", err)
		}
	}
	return cfg, nil
}
