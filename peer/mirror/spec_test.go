package mirror_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/p2pd/p2pd/internal/registrytest"
	"github.com/p2pd/p2pd/origin/upstream"
)

const (
	acceptDockerManifest = string(types.DockerManifestSchema2)
	acceptOCIManifest    = string(types.OCIManifestSchema1)
	acceptOCIIndex       = string(types.OCIImageIndex)
)

// TestMirrorSpec: content negotiation of manifests, HEAD, tag lists with
// pagination, and 405 UNSUPPORTED for every push method on every route,
// through raw HTTP and through go-containerregistry's client.
func TestMirrorSpec(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	idx := registrytest.Index(t, 1, 32<<10) // an OCI index of Docker image manifests
	for _, tag := range []string{"v1", "v2", "v3", "v4", "v5"} {
		registrytest.Push(t, reg.Host, "team/app", tag, idx, "", "")
	}
	dockerList := mutate.IndexMediaType(idx, types.DockerManifestList)
	registrytest.Push(t, reg.Host, "team/app", "dl", dockerList, "", "")
	img, err := random.Image(16<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	ociImg := mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	ociRef, err := name.ParseReference(reg.Host+"/team/app:oci", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ociRef, ociImg); err != nil {
		t.Fatal(err)
	}
	allTags := []string{"dl", "oci", "v1", "v2", "v3", "v4", "v5"}

	c := newCluster(t, []upstream.Registry{{Name: "registry.test", Endpoint: reg.URL}})
	p := c.addPeer(nil)
	base := "http://" + p.Addrs["mirror"]
	manifests := base + "/v2/team/app/manifests/"
	const ns = "?ns=registry.test"

	idxDigest, _ := idx.Digest()
	dlDigest, _ := dockerList.Digest()
	dlRaw, _ := dockerList.RawManifest()
	ociDigest, _ := ociImg.Digest()
	ociRaw, _ := ociImg.RawManifest()
	amd64 := platformManifest(t, dockerList, "amd64")
	amd64Raw, _ := amd64.RawManifest()
	amd64Digest, _ := amd64.Digest()

	t.Run("negotiation", func(t *testing.T) {
		for _, tc := range []struct {
			name, ref, accept string
			status            int
			code, mediaType   string
			digest            string
			body              []byte
		}{
			{"index accepted", "v1", acceptOCIIndex + ", " + acceptDockerManifest, 200, "", acceptOCIIndex, idxDigest.String(), nil},
			{"no Accept header: anything", "v1", "", 200, "", acceptOCIIndex, idxDigest.String(), nil},
			{"wildcard", "v1", "*/*", 200, "", acceptOCIIndex, idxDigest.String(), nil},
			{"OCI index not accepted", "v1", acceptDockerManifest, 404, "MANIFEST_UNKNOWN", "", "", nil},
			{"OCI index at q=0", "v1", acceptOCIIndex + ";q=0, " + acceptDockerManifest, 404, "MANIFEST_UNKNOWN", "", "", nil},
			{"OCI manifest not accepted", "oci", acceptDockerManifest, 404, "MANIFEST_UNKNOWN", "", "", nil},
			{"OCI manifest accepted", "oci", acceptOCIManifest, 200, "", acceptOCIManifest, ociDigest.String(), ociRaw},
			{"Docker list by tag, not accepted: the linux/amd64 image", "dl", acceptDockerManifest, 200, "",
				acceptDockerManifest, amd64Digest.String(), amd64Raw},
			{"Docker list by tag, neither accepted", "dl", acceptOCIManifest, 400, "MANIFEST_INVALID", "", "", nil},
			{"Docker list by digest: served as it is", dlDigest.String(), acceptDockerManifest, 200, "",
				string(types.DockerManifestList), dlDigest.String(), dlRaw},
			{"Docker image manifest: served whatever the Accept", amd64Digest.String(), acceptOCIManifest, 200, "",
				acceptDockerManifest, amd64Digest.String(), amd64Raw},
		} {
			hdr := map[string]string{}
			if tc.accept != "" {
				hdr["Accept"] = tc.accept
			}
			for _, method := range []string{http.MethodGet, http.MethodHead} {
				resp, body := get(t, method, manifests+tc.ref+ns, hdr)
				if tc.status != 200 {
					if method == http.MethodGet {
						wantError(t, resp, body, tc.status, tc.code)
					} else if resp.StatusCode != tc.status || len(body) != 0 {
						t.Errorf("%s: HEAD: %d, %d body bytes; want %d", tc.name, resp.StatusCode, len(body), tc.status)
					}
					continue
				}
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.mediaType || resp.Header.Get("Docker-Content-Digest") != tc.digest ||
					resp.Header.Get("Etag") != `"`+tc.digest+`"` {
					t.Errorf("%s: %s: %d %v; want 200, %s, %s", tc.name, method, resp.StatusCode, resp.Header, tc.mediaType, tc.digest)
					continue
				}
				n, _ := strconv.Atoi(resp.Header.Get("Content-Length"))
				switch {
				case method == http.MethodHead && len(body) != 0:
					t.Errorf("%s: HEAD sent %d body bytes", tc.name, len(body))
				case method == http.MethodGet && len(body) != n:
					t.Errorf("%s: Content-Length %d, body %d bytes", tc.name, n, len(body))
				case method == http.MethodGet && tc.body != nil && string(body) != string(tc.body):
					t.Errorf("%s: the body is not the manifest", tc.name)
				}
			}
		}
		resp, body := get(t, http.MethodGet, manifests+"v1"+ns, map[string]string{"If-None-Match": `"` + idxDigest.String() + `"`})
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("If-None-Match of the digest: %d, %d bytes", resp.StatusCode, len(body))
		}
	})

	t.Run("client", func(t *testing.T) {
		opts := []remote.Option{remote.WithTransport(nsTransport{ns: "registry.test", rt: http.DefaultTransport})}
		repo, err := name.NewRepository(p.Addrs["mirror"]+"/team/app", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		for ref, want := range map[string]struct {
			mt types.MediaType
			d  v1.Hash
		}{"v1": {types.OCIImageIndex, idxDigest}, "dl": {types.DockerManifestList, dlDigest}, "oci": {types.OCIManifestSchema1, ociDigest}} {
			desc, err := remote.Head(repo.Tag(ref), opts...)
			if err != nil || desc.MediaType != want.mt || desc.Digest != want.d {
				t.Errorf("remote.Head %s: %v %v; want %s %s", ref, desc, err, want.mt, want.d)
			}
			got, err := remote.Get(repo.Tag(ref), opts...)
			if err != nil || got.MediaType != want.mt || got.Digest != want.d {
				t.Errorf("remote.Get %s: %v; want %s %s", ref, err, want.mt, want.d)
			}
		}
		tags, err := remote.List(repo, append(opts, remote.WithPageSize(2))...)
		if err != nil || !slices.Equal(tags, allTags) {
			t.Errorf("remote.List, 2 a page: %v %v; want %v", tags, err, allTags)
		}
		if _, err := remote.List(repo.Registry.Repo("team/nosuch"), opts...); !hasStatus(err, http.StatusNotFound, "NAME_UNKNOWN") {
			t.Errorf("remote.List of an unknown repository: %v", err)
		}
		// Pushes and deletes are refused with the spec's UNSUPPORTED.
		if err := remote.Write(repo.Tag("pushed"), img, opts...); !hasStatus(err, http.StatusMethodNotAllowed, "UNSUPPORTED") {
			t.Errorf("remote.Write: %v", err)
		}
		if err := remote.Tag(repo.Tag("retag"), ociImg, opts...); !hasStatus(err, http.StatusMethodNotAllowed, "UNSUPPORTED") {
			t.Errorf("remote.Tag: %v", err)
		}
		if err := remote.Delete(repo.Digest(ociDigest.String()), opts...); !hasStatus(err, http.StatusMethodNotAllowed, "UNSUPPORTED") {
			t.Errorf("remote.Delete: %v", err)
		}
	})

	t.Run("tags", func(t *testing.T) {
		list := func(query string) ([]string, string) {
			t.Helper()
			resp, body := get(t, http.MethodGet, base+"/v2/team/app/tags/list"+query, nil)
			var tl struct {
				Name string   `json:"name"`
				Tags []string `json:"tags"`
			}
			if resp.StatusCode != 200 || json.Unmarshal(body, &tl) != nil || tl.Name != "team/app" || tl.Tags == nil ||
				!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("tags/list%s: %d %s", query, resp.StatusCode, body)
			}
			return tl.Tags, resp.Header.Get("Link")
		}
		if got, link := list(ns); !slices.Equal(got, allTags) || link != "" {
			t.Errorf("all tags: %v, Link %q; want %v", got, link, allTags)
		}
		if got, _ := list(ns + "&last=v3"); !slices.Equal(got, []string{"v4", "v5"}) {
			t.Errorf("after v3: %v", got)
		}
		if got, link := list(ns + "&n=0"); len(got) != 0 || link != "" {
			t.Errorf("n=0: %v %q", got, link)
		}
		// Pages of 3, following the Link headers.
		got, link := list(ns + "&n=3")
		if !slices.Equal(got, allTags[:3]) || link != `</v2/team/app/tags/list?last=v1&n=3&ns=registry.test>; rel="next"` {
			t.Fatalf("first page: %v, Link %q", got, link)
		}
		next := regexp.MustCompile(`^<(/v2/[^>]+)>; rel="next"$`)
		for pages := 1; link != ""; pages++ {
			m := next.FindStringSubmatch(link)
			if m == nil || pages > len(allTags) {
				t.Fatalf("Link %q after %d pages", link, pages)
			}
			page, l := list(strings.TrimPrefix(m[1], "/v2/team/app/tags/list"))
			if len(page) > 3 {
				t.Errorf("a page of n=3 has %d tags", len(page))
			}
			got, link = append(got, page...), l
		}
		if !slices.Equal(got, allTags) {
			t.Errorf("tags over the pages: %v, want %v", got, allTags)
		}
		for _, bad := range []string{"&n=-1", "&n=x"} {
			resp, body := get(t, http.MethodGet, base+"/v2/team/app/tags/list"+ns+bad, nil)
			wantError(t, resp, body, 400, "PAGINATION_NUMBER_INVALID")
		}
		resp, body := get(t, http.MethodGet, base+"/v2/team/nosuch/tags/list"+ns, nil)
		wantError(t, resp, body, 404, "NAME_UNKNOWN")
		resp, body = get(t, http.MethodGet, base+"/v2/Team/tags/list"+ns, nil)
		wantError(t, resp, body, 400, "NAME_INVALID")
		resp, body = get(t, http.MethodHead, base+"/v2/team/app/tags/list"+ns, nil)
		if resp.StatusCode != 200 || len(body) != 0 {
			t.Errorf("HEAD tags/list: %d, %d bytes", resp.StatusCode, len(body))
		}
	})

	t.Run("push methods", func(t *testing.T) {
		blob := "sha256:" + strings.Repeat("ab", 32)
		for _, path := range []string{"/v2/", "/v2/team/app/manifests/v1", "/v2/team/app/manifests/" + idxDigest.String(),
			"/v2/team/app/blobs/" + blob, "/v2/team/app/blobs/uploads/", "/v2/team/app/blobs/uploads/0f3c-uuid",
			"/v2/team/app/tags/list", "/v2/_catalog", "/v2/team/app/referrers/" + blob} {
			for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
				resp, body := get(t, method, base+path+ns, nil)
				wantError(t, resp, body, http.StatusMethodNotAllowed, "UNSUPPORTED")
				if resp.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("%s %s: Allow %q", method, path, resp.Header.Get("Allow"))
				}
			}
		}
	})
}

// platformManifest returns the image of idx for linux/arch.
func platformManifest(t *testing.T, idx v1.ImageIndex, arch string) v1.Image {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.Architecture == arch {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("no %s image", arch)
	return nil
}

// hasStatus reports whether err is a registry error with status and code.
func hasStatus(err error, status int, code string) bool {
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != status {
		return false
	}
	for _, e := range te.Errors {
		if string(e.Code) == code {
			return true
		}
	}
	return false
}
