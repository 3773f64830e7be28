package cli

import (
	"testing"

	"github.com/p2pd/p2pd/internal/config"
)

// FuzzConfig decodes p2pctl's config file (--config) as load does:
// nothing panics, and a file that decodes gets an answer from Validate.
func FuzzConfig(f *testing.F) {
	f.Add([]byte("tracker: https://tracker:7400\norigin: https://origin:7401\npeer: unix:/run/p2pd.sock\ncredentials: /etc/p2pd\n"))
	f.Add([]byte("push_token: p2pd_abcdefghijklmnop\nadmin_token: x\nca_file: /etc/p2pd/ca.crt\nchunker: {avg_size: 1048576}\n"))
	f.Add([]byte("chunker: {min_size: -1, avg_size: 3}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c Config
		if config.Decode(b, &c) == nil {
			_ = c.Chunker.Validate()
		}
	})
}
