// Package config loads YAML configuration files strictly: a size limit,
// unknown keys refused, and errors that name the file. Flags are applied on
// top by the caller, so precedence is defaults < file < flags.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"gopkg.in/yaml.v3"
)

// MaxFileBytes bounds a configuration file.
const MaxFileBytes = 1 << 20

// ErrInvalid wraps every error about a configuration file's content.
var ErrInvalid = errors.New("invalid config")

// LoadFile decodes the YAML file at path into dst, which should already hold
// the defaults. An empty path leaves dst unchanged.
func LoadFile(path string, dst any) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return fmt.Errorf("config: read %s: %w", path, err)
	}
	if err := Decode(b, dst); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Decode decodes YAML bytes into dst, refusing unknown keys, more than one
// document, and input over MaxFileBytes.
func Decode(b []byte, dst any) error {
	if len(b) > MaxFileBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrInvalid, len(b), MaxFileBytes)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: more than one YAML document", ErrInvalid)
	}
	return nil
}
