// Package deploy holds p2pd's deployment examples, which
// docs/containers.md shows: a Kubernetes DaemonSet of peers with their
// ConfigMap (kubernetes/p2pd-peer.yaml), containerd's hosts.toml for the
// registry mirror (containerd/certs.d/...) and Docker's daemon.json
// (docker/daemon.json). It has no code: its tests parse every example,
// check that its parts fit together, load the p2pd configurations they
// embed with p2pd's own loader and validate them, and check that the
// documentation shows the files as they are, so that neither can rot.
package deploy
