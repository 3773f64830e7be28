package daemon

import (
	"testing"

	"github.com/p2pd/p2pd/internal/config"
)

// FuzzConfigYAML decodes a YAML document as every role's configuration,
// as p2pd does with --config, and validates it: nothing may panic, and a
// document that decodes must give a config whose Validate answers.
func FuzzConfigYAML(f *testing.F) {
	for _, s := range []string{
		"listen: 127.0.0.1:7400\ntracker:\n  announce_interval: 5s\n  peer_ttl: 15s\nlog: {level: info, format: text}\n",
		"data_dir: /var/lib/p2pd\ntracker: http://127.0.0.1:7400\npeer:\n  listen_addrs: [/ip4/0.0.0.0/tcp/4001]\n  upload_slots: 8\n  zone: eu\nstore:\n  capacity: 1073741824\n",
		"listen: :7401\norigin:\n  max_blob_size: 0\n  chunker: {min_size: 262144, avg_size: 1048576, max_size: 4194304}\ndata_dir: /d\n",
		"control: unix:/run/p2pd.sock\ndata_dir: /d\nsecurity:\n  psk_file: /etc/p2pd/swarm.key\n  announce_token_file: /etc/p2pd/announce.token\n  ca_file: /etc/p2pd/ca.crt\n  max_clock_skew: 30s\n",
		"peers: 3\nopen: true\nsecurity: {cert_file: a}\n",
		"peer: {enable_quic: true, sched: {max_inflight_per_peer: -1}}\n",
		"tracker: {announce_interval: 1500ms}\n",
		"log: {level: loud}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var tc TrackerConfig
		if config.Decode(b, &tc) == nil {
			_ = tc.WithDefaults().Validate()
		}
		var oc OriginConfig
		if config.Decode(b, &oc) == nil {
			_ = oc.WithDefaults().Validate()
		}
		var pc PeerConfig
		if config.Decode(b, &pc) == nil {
			_ = pc.WithDefaults().Validate()
		}
		var dc DevConfig
		if config.Decode(b, &dc) == nil {
			_ = dc.WithDefaults().Validate()
		}
	})
}
