package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type sample struct {
	Name string `yaml:"name"`
	Size int    `yaml:"size"`
	Sub  struct {
		On bool `yaml:"on"`
	} `yaml:"sub"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"empty keeps defaults", "", true},
		{"fields", "name: x\nsize: 3\nsub:\n  on: true\n", true},
		{"unknown key", "nmae: x\n", false},
		{"wrong type", "size: big\n", false},
		{"two documents", "name: a\n---\nname: b\n", false},
		{"too large", "name: " + strings.Repeat("x", MaxFileBytes) + "\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := sample{Name: "default"}
			err := Decode([]byte(tc.in), &s)
			if (err == nil) != tc.ok {
				t.Fatalf("Decode = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("%v does not wrap ErrInvalid", err)
			}
			if tc.in == "" && s.Name != "default" {
				t.Fatal("empty input changed the defaults")
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("size: 7\n"), 0o600)
	var s sample
	if err := LoadFile(path, &s); err != nil || s.Size != 7 {
		t.Fatalf("LoadFile = %v, %+v", err, s)
	}
	if err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"), &s); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("name: x\nsize: 3\n"))
	f.Add([]byte("sub: {on: true}"))
	f.Add([]byte("- [a, b]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s sample
		_ = Decode(b, &s)
	})
}
