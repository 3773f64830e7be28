// Package archtest holds tests that enforce the module's import boundaries
// and that every package starts with a doc comment.
package archtest
