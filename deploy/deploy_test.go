package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
	"gopkg.in/yaml.v3"

	"github.com/p2pd/p2pd/internal/config"
	"github.com/p2pd/p2pd/internal/daemon"
	"github.com/p2pd/p2pd/peer/store"
)

const (
	k8sFile     = "kubernetes/p2pd-peer.yaml"
	hostsFile   = "containerd/certs.d/docker.io/hosts.toml"
	dockerFile  = "docker/daemon.json"
	docFile     = "../docs/containers.md"
	mirrorURL   = "http://" + daemon.DefaultMirrorListen
	certsDir    = "/etc/containerd/certs.d"
	peerCfgName = "peer.yaml"
)

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// block is a fenced code block of the documentation.
type block struct{ lang, text string }

var fence = regexp.MustCompile("(?ms)^```([a-z]*)\n(.*?)^```$")

func docBlocks(t *testing.T) []block {
	t.Helper()
	var out []block
	for _, m := range fence.FindAllStringSubmatch(read(t, docFile), -1) {
		out = append(out, block{lang: m[1], text: m[2]})
	}
	if len(out) < 5 {
		t.Fatalf("%s: only %d code blocks", docFile, len(out))
	}
	return out
}

// TestDocsShowTheFiles: docs/containers.md shows each example file as it
// is, in a block of its language.
func TestDocsShowTheFiles(t *testing.T) {
	blocks := docBlocks(t)
	for file, lang := range map[string]string{k8sFile: "yaml", hostsFile: "toml", dockerFile: "json"} {
		if !slices.Contains(blocks, block{lang: lang, text: read(t, file)}) {
			t.Errorf("%s does not show %s as it is (in a %s block)", docFile, file, lang)
		}
	}
}

// obj is a decoded YAML or JSON object.
type obj = map[string]any

// at walks m along keys (strings for maps, ints for lists) and returns
// what is there, failing the test if the path does not exist.
func at(t *testing.T, m any, keys ...any) any {
	t.Helper()
	cur := m
	for i, k := range keys {
		switch k := k.(type) {
		case string:
			mm, ok := cur.(obj)
			if !ok || mm[k] == nil {
				t.Fatalf("no %v", keys[:i+1])
			}
			cur = mm[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("no %v", keys[:i+1])
			}
			cur = l[k]
		}
	}
	return cur
}

func str(t *testing.T, m any, keys ...any) string {
	t.Helper()
	s, ok := at(t, m, keys...).(string)
	if !ok {
		t.Fatalf("%v is not a string", keys)
	}
	return s
}

func list(t *testing.T, m any, keys ...any) []any {
	t.Helper()
	l, ok := at(t, m, keys...).([]any)
	if !ok {
		t.Fatalf("%v is not a list", keys)
	}
	return l
}

// TestKubernetesPeer: the DaemonSet and its ConfigMap fit together, the
// peer.yaml they carry loads with p2pd's config loader (as `p2pd peer
// --config` does) and validates, and the mirror, the probes, the ports and
// the hosts.toml agree.
func TestKubernetesPeer(t *testing.T) {
	dec := yaml.NewDecoder(strings.NewReader(read(t, k8sFile)))
	docs := map[string]obj{}
	for {
		var d obj
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", k8sFile, err)
		}
		docs[str(t, d, "kind")] = d
	}
	cm, ds := docs["ConfigMap"], docs["DaemonSet"]
	if len(docs) != 2 || cm == nil || ds == nil {
		t.Fatalf("%s holds %d kinds; want a ConfigMap and a DaemonSet", k8sFile, len(docs))
	}
	if str(t, cm, "apiVersion") != "v1" || str(t, ds, "apiVersion") != "apps/v1" {
		t.Errorf("apiVersions %q and %q", cm["apiVersion"], ds["apiVersion"])
	}
	if str(t, cm, "metadata", "namespace") != str(t, ds, "metadata", "namespace") {
		t.Error("the ConfigMap and the DaemonSet are in different namespaces")
	}
	for k, v := range at(t, ds, "spec", "selector", "matchLabels").(obj) {
		if at(t, ds, "spec", "template", "metadata", "labels", k) != v {
			t.Errorf("the pod template lacks the selector's label %s=%v", k, v)
		}
	}
	pod := at(t, ds, "spec", "template", "spec").(obj)
	if pod["hostNetwork"] != true || pod["dnsPolicy"] != "ClusterFirstWithHostNet" {
		t.Errorf("hostNetwork %v, dnsPolicy %v: the mirror must be on the node's loopback, and Services must resolve", pod["hostNetwork"], pod["dnsPolicy"])
	}

	// Volumes: every mount names one; remember where each is mounted.
	volumes := map[string]obj{}
	for _, v := range list(t, pod, "volumes") {
		volumes[str(t, v, "name")] = v.(obj)
	}
	mounts := func(c any) map[string]string { // mount path -> volume
		m := map[string]string{}
		for _, vm := range list(t, c, "volumeMounts") {
			name := str(t, vm, "name")
			if volumes[name] == nil {
				t.Errorf("container %s mounts undeclared volume %s", str(t, c, "name"), name)
			}
			m[str(t, vm, "mountPath")] = name
		}
		return m
	}
	// under returns the volume mounted at the directory holding p.
	under := func(m map[string]string, p string) obj {
		for dir, name := range m {
			if p == dir || strings.HasPrefix(p, dir+"/") {
				return volumes[name]
			}
		}
		return nil
	}
	cmName := str(t, cm, "metadata", "name")

	peerC := at(t, pod, "containers", 0)
	pm := mounts(peerC)
	args := list(t, peerC, "args")
	if len(args) != 3 || args[0] != "peer" || args[1] != "--config" {
		t.Fatalf("peer args %v; want peer --config FILE", args)
	}
	cfgPath := args[2].(string)
	v := under(pm, cfgPath)
	if v == nil || at(t, v, "configMap", "name") != cmName || path.Base(cfgPath) != peerCfgName {
		t.Fatalf("--config %s is not %s of ConfigMap %s", cfgPath, peerCfgName, cmName)
	}

	// peer.yaml, loaded as `p2pd peer --config` loads it.
	file := filepath.Join(t.TempDir(), peerCfgName)
	if err := os.WriteFile(file, []byte(str(t, cm, "data", peerCfgName)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := daemon.PeerConfig{NodeConfig: daemon.NodeConfig{Store: store.DefaultConfig("")}}
	if err := config.LoadFile(file, &cfg); err != nil {
		t.Fatalf("peer.yaml: %v", err)
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		t.Fatalf("peer.yaml does not validate: %v", err)
	}
	if cfg.Mirror.Listen != daemon.DefaultMirrorListen || cfg.Mirror.DefaultRegistry != "docker.io" {
		t.Errorf("mirror listen %q, default registry %q; want %s and docker.io", cfg.Mirror.Listen, cfg.Mirror.DefaultRegistry, daemon.DefaultMirrorListen)
	}
	if under(pm, cfg.DataDir) == nil || at(t, under(pm, cfg.DataDir), "hostPath") == nil {
		t.Errorf("data_dir %s is not on a hostPath volume: the node's store would go with the pod", cfg.DataDir)
	}
	for _, f := range []string{cfg.Security.PSKFile, cfg.Security.AnnounceTokenFile} {
		if v := under(pm, f); f == "" || v == nil || v["secret"] == nil {
			t.Errorf("security file %q is not in a mounted Secret", f)
		}
	}
	// The peer's libp2p port is open on every interface and published.
	_, mirrorPort, _ := net.SplitHostPort(daemon.DefaultMirrorListen)
	var p2pPort string
	for _, a := range cfg.Peer.ListenAddrs {
		if f := strings.Split(a, "/"); len(f) == 5 && f[1] == "ip4" && f[2] == "0.0.0.0" && f[3] == "tcp" {
			p2pPort = f[4]
		}
	}
	port := at(t, peerC, "ports", 0).(obj)
	if p2pPort == "" || asString(port["containerPort"]) != p2pPort || asString(port["hostPort"]) != p2pPort {
		t.Errorf("peer.listen_addrs %v and the container port %v disagree, or listen on loopback only", cfg.Peer.ListenAddrs, port)
	}
	for _, probe := range []string{"readinessProbe", "livenessProbe"} {
		if asString(at(t, peerC, probe, "httpGet", "port")) != mirrorPort || str(t, peerC, probe, "httpGet", "path") != "/v2/" {
			t.Errorf("%s is not GET /v2/ of the mirror", probe)
		}
	}

	// The init container installs the ConfigMap's hosts.toml into the
	// node's containerd hosts directory.
	initC := at(t, pod, "initContainers", 0)
	im := mounts(initC)
	cmd := strings.Join(anyStrings(list(t, initC, "command")), " ")
	re := regexp.MustCompile(`cp (\S+) (\S+)`)
	m := re.FindStringSubmatch(cmd)
	if m == nil {
		t.Fatalf("init command %q copies nothing", cmd)
	}
	src, dst := m[1], m[2]
	if v := under(im, src); v == nil || at(t, v, "configMap", "name") != cmName {
		t.Fatalf("init copies %s, not from the ConfigMap", src)
	}
	hosts := str(t, cm, "data", path.Base(src))
	if hosts != read(t, hostsFile) {
		t.Errorf("the ConfigMap's %s is not %s", path.Base(src), hostsFile)
	}
	v = under(im, dst)
	var dstDir string
	for dir, name := range im {
		if strings.HasPrefix(dst, dir+"/") && volumes[name] != nil {
			dstDir = str(t, volumes[name], "hostPath", "path") + strings.TrimPrefix(dst, dir)
		}
	}
	if v == nil || dstDir != certsDir+"/docker.io/hosts.toml" {
		t.Errorf("init copies to %s on the node, want %s/docker.io/hosts.toml", dstDir, certsDir)
	}
	checkHostsTOML(t, "the ConfigMap's hosts.toml", hosts)
}

// asString is a port number or name as the manifest gives it.
func asString(v any) string { return fmt.Sprint(v) }

func anyStrings(l []any) []string {
	out := make([]string, len(l))
	for i, v := range l {
		out[i], _ = v.(string)
	}
	return out
}

// checkHostsTOML: a hosts.toml with an https server and the mirror as its
// one host, for pull and resolve.
func checkHostsTOML(t *testing.T, what, text string) {
	t.Helper()
	var h struct {
		Server string `toml:"server"`
		Host   map[string]struct {
			Capabilities []string `toml:"capabilities"`
		} `toml:"host"`
	}
	d := toml.NewDecoder(strings.NewReader(text))
	d.DisallowUnknownFields()
	if err := d.Decode(&h); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if u, err := url.Parse(h.Server); err != nil || u.Scheme != "https" || u.Host == "" {
		t.Errorf("%s: server %q", what, h.Server)
	}
	m, ok := h.Host[mirrorURL]
	if len(h.Host) != 1 || !ok || !slices.Equal(m.Capabilities, []string{"pull", "resolve"}) {
		t.Errorf("%s: hosts %v; want only %s with capabilities pull and resolve", what, h.Host, mirrorURL)
	}
}

// TestContainerdTOML: every TOML the documentation shows parses; the
// hosts.toml files point at the mirror, the config.toml at their
// directory.
func TestContainerdTOML(t *testing.T) {
	checkHostsTOML(t, hostsFile, read(t, hostsFile))
	n := 0
	for _, b := range docBlocks(t) {
		if b.lang != "toml" {
			continue
		}
		n++
		var m obj
		if err := toml.Unmarshal([]byte(b.text), &m); err != nil {
			t.Errorf("a TOML block of %s: %v\n%s", docFile, err, b.text)
			continue
		}
		if _, ok := m["server"]; ok {
			checkHostsTOML(t, "a hosts.toml block of "+docFile, b.text)
			continue
		}
		if got := str(t, m, "plugins", "io.containerd.grpc.v1.cri", "registry", "config_path"); got != certsDir {
			t.Errorf("containerd's config_path %q, want %s", got, certsDir)
		}
	}
	if n < 3 {
		t.Errorf("%s shows %d TOML blocks; want config.toml and two hosts.toml", docFile, n)
	}
}

// TestDockerDaemonJSON: daemon.json is valid JSON with Docker's key, and
// names the mirror at its default address.
func TestDockerDaemonJSON(t *testing.T) {
	var d struct {
		Mirrors []string `json:"registry-mirrors"`
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(read(t, dockerFile))))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dockerFile, err)
	}
	if !slices.Equal(d.Mirrors, []string{mirrorURL}) {
		t.Errorf("registry-mirrors %v, want [%s]", d.Mirrors, mirrorURL)
	}
}

// TestDocConfigs: the origin.yaml and peer.yaml the documentation shows
// load with p2pd's config loader and validate.
func TestDocConfigs(t *testing.T) {
	n := 0
	for _, b := range docBlocks(t) {
		if b.lang != "yaml" {
			continue
		}
		first, _, _ := strings.Cut(b.text, "\n")
		var err error
		switch {
		case strings.HasPrefix(first, "# origin.yaml"):
			cfg := daemon.OriginConfig{NodeConfig: daemon.NodeConfig{Store: store.DefaultConfig("")}}
			if err = config.Decode([]byte(b.text), &cfg); err == nil {
				err = cfg.WithDefaults().Validate()
			}
		case strings.HasPrefix(first, "# peer.yaml"):
			cfg := daemon.PeerConfig{NodeConfig: daemon.NodeConfig{Store: store.DefaultConfig("")}}
			if err = config.Decode([]byte(b.text), &cfg); err == nil {
				err = cfg.WithDefaults().Validate()
			}
		default:
			continue
		}
		n++
		if err != nil {
			t.Errorf("%s of %s: %v", first, docFile, err)
		}
	}
	if n != 2 {
		t.Errorf("found %d origin.yaml and peer.yaml blocks in %s, want 2", n, docFile)
	}
}
