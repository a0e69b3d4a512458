package dataset

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/fapo-dev/fapo/engine/internal/keys"
	"github.com/fapo-dev/fapo/engine/refusal"
)

// FormatVersion is the version of the sealed store layout and record format.
const FormatVersion = 1

// DefaultHome returns the sealed store's directory: $FAPO_HOME, else
// $XDG_DATA_HOME/fapo, else the platform's user data directory.
func DefaultHome(getenv func(string) string) (string, error) {
	if h := getenv("FAPO_HOME"); h != "" {
		return filepath.Abs(h)
	}
	// The XDG spec says a relative value is invalid and must be ignored.
	if x := getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "fapo"), nil
	}
	switch runtime.GOOS {
	case "windows":
		if d := getenv("LOCALAPPDATA"); d != "" {
			return filepath.Join(d, "fapo"), nil
		}
	case "darwin":
		if h := getenv("HOME"); h != "" {
			return filepath.Join(h, "Library", "Application Support", "fapo"), nil
		}
	default:
		if h := getenv("HOME"); h != "" {
			return filepath.Join(h, ".local", "share", "fapo"), nil
		}
	}
	return "", errors.New("cannot tell where the sealed store lives: set FAPO_HOME to a directory outside the workspace")
}

// Store is the sealed store: held-out splits encrypted at rest, one
// directory per tenant, one key file per tenant.
//
// Layout under home:
//
//	keys/<tenant>.key                 32 random bytes, 0600
//	tenants/<tenant>/manifest.json    counts, seed, ratios, source hash
//	tenants/<tenant>/validation.jsonl.enc, test.jsonl.enc
//	tenants/<tenant>/fingerprints.enc hashed word runs for leak scans
//	tenants/<tenant>/pinned/<sha256>  a copy of each pinned frozen file
//	tenants/<tenant>/pinned/files-<id>/ a verified copy of the files a
//	                                  command scorer or tool runs from
type Store struct{ home string }

// OpenStore returns the store at home; nothing is created until a seal.
func OpenStore(home string) *Store { return &Store{home: home} }

// Home returns the store's directory.
func (s *Store) Home() string { return s.home }

var tenantNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func checkName(name string) error {
	if !tenantNamePattern.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("tenant name %q: use letters, digits, '.', '_' and '-' only (it names files in the sealed store)", name)
	}
	return nil
}

func (s *Store) tenantDir(name string) string { return filepath.Join(s.home, "tenants", name) }
func (s *Store) keyPath(name string) string   { return filepath.Join(s.home, "keys", name+".key") }

// ManifestPath returns where the manifest of a tenant lives.
func (s *Store) ManifestPath(name string) string {
	return filepath.Join(s.tenantDir(name), "manifest.json")
}

func (s *Store) splitPath(name string, split Split) string {
	return filepath.Join(s.tenantDir(name), string(split)+".jsonl.enc")
}

func (s *Store) fingerprintPath(name string) string {
	return filepath.Join(s.tenantDir(name), "fingerprints.enc")
}

// Manifest describes one seal.
type Manifest struct {
	FormatVersion int       `json:"format_version"`
	Tenant        string    `json:"tenant"`
	CreatedAt     time.Time `json:"created_at"`
	Source        struct {
		Path   string `json:"path"`
		SHA256 string `json:"sha256"`
		Cases  int    `json:"cases"`
		// Format is what the cases were converted from (e.g. "gsm8k"), and
		// CasesSHA256 the hash of the converted cases that were sealed;
		// both are empty when the source was a file of cases.
		Format      string `json:"format,omitempty"`
		CasesSHA256 string `json:"cases_sha256,omitempty"`
	} `json:"source"`
	Seed     int64  `json:"seed"`
	Ratios   Ratios `json:"ratios"`
	Stratify string `json:"stratify,omitempty"`
	// Groups is how many metadata.group values kept cases together.
	Groups int `json:"groups,omitempty"`
	// Duplicates is what the contamination check grouped: near-duplicate
	// inputs under different ids land in one split, as a group does. Nil
	// in a manifest sealed before fapo checked.
	Duplicates *DuplicateGroups `json:"duplicates,omitempty"`
	Counts     SplitCounts      `json:"counts"`
	// Strata maps each value of the stratify path to its counts per split.
	Strata map[string]SplitCounts `json:"strata,omitempty"`
	// TrainSHA256 lets doctor tell whether data/train.jsonl was edited.
	TrainSHA256 string `json:"train_sha256"`
	// Pinned maps each of the tenant's frozen files (tenant-relative,
	// slash-separated: tenant.toml, the scorer's and the declared tools'
	// files, data/train.jsonl) to its sha256. The server refuses to act on
	// a tenant whose files no longer match, until the operator pins them
	// again (fapo pin); nil means sealed before fapo pinned anything.
	Pinned map[string]string `json:"pinned,omitempty"`
	// PinnedAt is when Pinned was last recorded (by a seal or fapo pin).
	PinnedAt time.Time `json:"pinned_at,omitzero"`
	// Endpoints are where the tenant's model blocks sent requests when
	// the operator sealed or pinned, environment overrides applied, by
	// block ("model", "models.judge"): a held-out run whose endpoint
	// differs is refused. nil means recorded before fapo kept them.
	Endpoints map[string]Endpoint `json:"endpoints,omitempty"`
}

// Endpoint is where one model block of tenant.toml sends its requests once
// the environment's overrides (base_url_env, name_env) are applied.
type Endpoint struct {
	BaseURL string `json:"base_url,omitempty"`
	Name    string `json:"name,omitempty"`
}

// Ratios are the split ratios a seal used.
type Ratios struct {
	Train      float64 `json:"train"`
	Validation float64 `json:"validation"`
	Test       float64 `json:"test"`
}

// SplitCounts counts cases per split.
type SplitCounts struct {
	Train      int `json:"train"`
	Validation int `json:"validation"`
	Test       int `json:"test"`
}

// Of returns the count of one split.
func (c SplitCounts) Of(s Split) int {
	switch s {
	case Train:
		return c.Train
	case Validation:
		return c.Validation
	case Test:
		return c.Test
	}
	return 0
}

func countsOf(a [3]int) SplitCounts { return SplitCounts{a[0], a[1], a[2]} }

// SealRequest is one `fapo seal`.
type SealRequest struct {
	TenantName string
	// TenantDir receives data/train.jsonl; its runs/ decides whether a
	// re-seal needs Force.
	TenantDir string
	// Source is the JSONL dataset; it is only read.
	Source string
	Split  SplitConfig
	// TaskType, when set, is required of every case.
	TaskType string
	// Force re-seals a tenant that already has runs.
	Force bool
	// Pinned are the bytes of the tenant's frozen files (tenant.toml, the
	// scorer's and tools' files), by tenant-relative slash path, as the
	// caller read and verified them; the seal records their hashes (and
	// train.jsonl's) in the manifest and keeps a copy of each in the store.
	Pinned map[string][]byte
	// Endpoints are the tenant's model endpoints as the operator's
	// environment makes them, recorded in the manifest (see Manifest).
	Endpoints map[string]Endpoint
	// Origin, when set, is what the manifest names as the source instead
	// of Source: the file the cases were converted from, when Source is a
	// temporary conversion that is removed once sealed.
	Origin *Origin
	// Progress, when set, is called as cases are written to their splits
	// (the last of the seal's three reads), with the total known.
	Progress func(done, total int)
}

// Origin is the file a dataset was converted from.
type Origin struct {
	Path   string // recorded as given: an absolute path, or a description
	SHA256 string
	Format string // e.g. "gsm8k"
}

// ErrNotSealed is returned (wrapped) for a tenant the store has no seal of.
var ErrNotSealed = errors.New("not sealed")

// Seal splits req.Source and writes train to the tenant, the held-out splits
// and the manifest to the store. Everything is staged in temporary files and
// renamed into place at the end, so a failed seal leaves the previous one.
//
// Which split a case lands in depends only on the seed, the ratios, the
// stratify path and the set of cases, not on the order of the source lines;
// within a split, cases keep their source order. Re-sealing the same source
// with the same configuration therefore reproduces train.jsonl byte for byte
// and the held-out splits case for case (their ciphertext differs: every
// record gets a fresh nonce).
func (s *Store) Seal(ctx context.Context, req SealRequest) (*Manifest, error) {
	if err := checkName(req.TenantName); err != nil {
		return nil, err
	}
	if err := req.Split.Validate(); err != nil {
		return nil, err
	}
	if err := checkRuns(req); err != nil {
		return nil, err
	}
	p, sum, err := planSeal(ctx, req)
	if err != nil {
		return nil, err
	}
	pl := p.assign()
	key, err := s.loadOrCreateKey(req.TenantName)
	if err != nil {
		return nil, err
	}
	st := &staging{}
	defer st.cleanup()
	w, err := s.openSplits(st, req, key)
	if err != nil {
		return nil, err
	}
	if err := w.write(ctx, req, pl, sum); err != nil {
		return nil, err
	}
	if err := s.stageFingerprints(st, req.TenantName, key, w); err != nil {
		return nil, err
	}
	if err := s.stagePinned(st, req); err != nil {
		return nil, err
	}
	m := newManifest(req, p, pl, sum, hex.EncodeToString(w.trainHash.Sum(nil)))
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	mf, err := st.create(s.ManifestPath(req.TenantName), 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := mf.Write(append(mb, '\n')); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	if err := st.commit(); err != nil {
		return nil, err
	}
	return m, nil
}

// planSeal reads the source twice: pass 1 validates every case and keeps
// only what the split needs; pass 2 computes the contamination check's
// signatures, now that the first pass told which strings every case
// repeats (see dupIndex). It returns the planner and the source's hash.
func planSeal(ctx context.Context, req SealRequest) (*planner, string, error) {
	p := newPlanner(req.Split)
	sum1, err := hashingRead(req.Source, func(line int, _ []byte, c Case) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if req.TaskType != "" && c.TaskType != req.TaskType {
			return &LineError{File: req.Source, Line: line, Err: fmt.Errorf("task_type %q, but the tenant's task_type is %q", c.TaskType, req.TaskType)}
		}
		if err := p.add(c); err != nil {
			return &LineError{File: req.Source, Line: line, Err: err}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(p.caseUnit) == 0 {
		return nil, "", fmt.Errorf("%s has no cases; a dataset is one JSON object per line", req.Source)
	}
	sumDup, err := hashingRead(req.Source, func(_ int, _ []byte, c Case) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.addInput(c)
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if sumDup != sum1 || int(p.dups.n) != len(p.caseUnit) {
		return nil, "", refusal.New(refusal.Seal, req.TenantName, fmt.Sprintf("%s changed while it was being sealed", req.Source))
	}
	return p, sum1, nil
}

// splitWriters are the staged split files of one seal: train in the
// clear (the agent reads it), validation and test encrypted, and the
// held-out cases' fingerprints as they are written.
type splitWriters struct {
	trainF    *os.File
	trainHash hash.Hash
	train     *bufio.Writer
	held      map[Split]*recordWriter
	fb        *FingerprintBuilder
}

// openSplits creates the directories and stages the split files.
func (s *Store) openSplits(st *staging, req SealRequest, key []byte) (*splitWriters, error) {
	if err := os.MkdirAll(s.tenantDir(req.TenantName), 0o700); err != nil {
		return nil, fmt.Errorf("create sealed store: %w", err)
	}
	dataDir := filepath.Join(req.TenantDir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dataDir, err)
	}
	trainF, err := st.create(filepath.Join(dataDir, "train.jsonl"), 0o644)
	if err != nil {
		return nil, err
	}
	w := &splitWriters{trainF: trainF, trainHash: sha256.New(), held: map[Split]*recordWriter{}, fb: NewFingerprintBuilder(ShingleSize)}
	w.train = bufio.NewWriter(io.MultiWriter(trainF, w.trainHash))
	for _, sp := range []Split{Validation, Test} {
		f, err := st.create(s.splitPath(req.TenantName, sp), 0o600)
		if err != nil {
			return nil, err
		}
		w.held[sp] = newRecordWriter(f, key, req.TenantName, sp)
	}
	return w, nil
}

// write is pass 3: it streams the cases again into their splits, in
// source order, and refuses a source that changed since pass 1 (sum).
func (w *splitWriters) write(ctx context.Context, req SealRequest, pl plan, sum string) error {
	ord := 0
	sum2, err := hashingRead(req.Source, func(_ int, raw []byte, c Case) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		sp := pl.caseSplit[ord]
		ord++
		if req.Progress != nil {
			req.Progress(ord, len(pl.caseSplit))
		}
		if sp == Train {
			if _, err := w.train.Write(raw); err != nil {
				return err
			}
			return w.train.WriteByte('\n')
		}
		w.fb.Add(c)
		return w.held[sp].write(raw)
	})
	if err != nil {
		return err
	}
	if sum != sum2 || ord != len(pl.caseSplit) {
		return refusal.New(refusal.Seal, req.TenantName, fmt.Sprintf("%s changed while it was being sealed", req.Source))
	}
	if err := w.train.Flush(); err != nil {
		return fmt.Errorf("write train split: %w", err)
	}
	for _, sp := range []Split{Validation, Test} {
		if err := w.held[sp].w.Flush(); err != nil {
			return fmt.Errorf("write %s split: %w", sp, err)
		}
	}
	return nil
}

// stageFingerprints writes the held-out cases' fingerprints, sealed.
// Whatever train shares with held-out cases is not secret; it is dropped
// so that train.jsonl (which the agent reads) never counts as a leak.
func (s *Store) stageFingerprints(st *staging, tenant string, key []byte, w *splitWriters) error {
	if _, err := w.trainF.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := w.fb.Exclude(w.trainF); err != nil {
		return fmt.Errorf("fingerprint held-out cases: %w", err)
	}
	fpF, err := st.create(s.fingerprintPath(tenant), 0o600)
	if err != nil {
		return err
	}
	if _, err := fpF.Write(sealBlob(key, []byte(fingerprintAD(tenant)), w.fb.Build().marshal())); err != nil {
		return fmt.Errorf("write fingerprints: %w", err)
	}
	return nil
}

// stagePinned keeps a copy of each frozen file the seal pins.
func (s *Store) stagePinned(st *staging, req SealRequest) error {
	if len(req.Pinned) > 0 {
		if err := os.MkdirAll(s.pinnedDir(req.TenantName), 0o700); err != nil {
			return fmt.Errorf("create sealed store: %w", err)
		}
	}
	for _, rel := range sortedPaths(req.Pinned) {
		f, err := st.create(s.blobPath(req.TenantName, sha256Hex(req.Pinned[rel])), 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(req.Pinned[rel]); err != nil {
			return fmt.Errorf("pin %s: %w", rel, err)
		}
	}
	return nil
}

// newManifest describes the seal: its configuration, counts and hashes.
func newManifest(req SealRequest, p *planner, pl plan, sum, trainSHA string) *Manifest {
	now := time.Now().UTC().Truncate(time.Second)
	m := &Manifest{
		FormatVersion: FormatVersion,
		Tenant:        req.TenantName,
		CreatedAt:     now,
		Seed:          req.Split.Seed,
		Ratios:        Ratios{req.Split.Train, req.Split.Validation, req.Split.Test},
		Stratify:      req.Split.Stratify,
		Counts:        countsOf(pl.counts),
		TrainSHA256:   trainSHA,
	}
	if req.Pinned != nil {
		m.Pinned, m.PinnedAt = pinSums(req.Pinned, m.TrainSHA256), now
	}
	m.Endpoints = req.Endpoints
	if abs, err := filepath.Abs(req.Source); err == nil {
		m.Source.Path = abs
	} else {
		m.Source.Path = req.Source
	}
	m.Source.SHA256 = sum
	m.Source.Cases = len(pl.caseSplit)
	if o := req.Origin; o != nil {
		m.Source.Path, m.Source.SHA256, m.Source.Format, m.Source.CasesSHA256 = o.Path, o.SHA256, o.Format, sum
	}
	m.Groups = p.groups
	m.Duplicates = &p.merged
	if req.Split.Stratify != "" {
		m.Strata = map[string]SplitCounts{}
		for k, v := range pl.strata {
			m.Strata[k] = countsOf(v)
		}
	}
	return m
}

// checkRuns refuses to re-seal under existing runs: their scores were
// measured on the old split.
func checkRuns(req SealRequest) error {
	if req.Force {
		return nil
	}
	entries, err := os.ReadDir(filepath.Join(req.TenantDir, "runs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check runs: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return refusal.New(refusal.Reseal, req.TenantName, fmt.Sprintf("tenant %s already has %d runs in %s; re-sealing reassigns cases between train, validation and test, "+
		"so those runs and every validation result in the journal would be measured on a different split",
		req.TenantName, n, filepath.Join(req.TenantDir, "runs")))
}

// hashingRead streams the cases of path and returns the sha256 of its bytes.
func hashingRead(path string, fn func(line int, raw []byte, c Case) error) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read cases: %w", err)
	}
	defer func() { _ = f.Close() }()
	h := sha256.New()
	if err := readCases(io.TeeReader(f, h), path, fn); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// staging holds temporary files that become real ones only on commit.
type staging struct {
	files []*os.File
	dests []string
	done  bool
}

func (st *staging) create(dest string, perm os.FileMode) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", dest, err)
	}
	st.files = append(st.files, f)
	st.dests = append(st.dests, dest)
	if err := f.Chmod(perm); err != nil {
		return nil, fmt.Errorf("write %s: %w", dest, err)
	}
	return f, nil
}

func (st *staging) commit() error {
	for i, f := range st.files {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("write %s: %w", st.dests[i], err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", st.dests[i], err)
		}
	}
	// The manifest is staged last, so it is renamed last: a manifest
	// never describes files that are not in place.
	for i, f := range st.files {
		if err := os.Rename(f.Name(), st.dests[i]); err != nil {
			return fmt.Errorf("write %s: %w", st.dests[i], err)
		}
	}
	st.done = true
	return nil
}

func (st *staging) cleanup() {
	if st.done {
		return
	}
	for _, f := range st.files {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
}

func (s *Store) loadOrCreateKey(name string) ([]byte, error) {
	return keys.Get(filepath.Dir(s.keyPath(name)), filepath.Base(s.keyPath(name)), true)
}

func (s *Store) readKey(name string) ([]byte, error) {
	key, err := keys.Get(filepath.Dir(s.keyPath(name)), filepath.Base(s.keyPath(name)), false)
	if err != nil {
		return nil, fmt.Errorf("read the key of tenant %s: %w; without it the sealed splits cannot be read", name, err)
	}
	return key, nil
}

func newAEAD(key []byte) cipher.AEAD {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // key length is checked by every caller
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return aead
}

// recordAD binds a record to its tenant, split and position, so records
// cannot be reordered, dropped from the middle, or moved between files
// without failing authentication.
func recordAD(tenant string, split Split, i uint64) []byte {
	ad := []byte(fmt.Sprintf("fapo-sealed/v%d\x00%s\x00%s\x00", FormatVersion, tenant, split))
	return binary.BigEndian.AppendUint64(ad, i)
}

func fingerprintAD(tenant string) string {
	return fmt.Sprintf("fapo-fingerprints/v%d\x00%s", FormatVersion, tenant)
}

// recordWriter writes one base64 line per case: nonce || AES-GCM ciphertext.
type recordWriter struct {
	w      *bufio.Writer
	aead   cipher.AEAD
	tenant string
	split  Split
	n      uint64
	buf    []byte
}

func newRecordWriter(w io.Writer, key []byte, tenant string, split Split) *recordWriter {
	return &recordWriter{w: bufio.NewWriter(w), aead: newAEAD(key), tenant: tenant, split: split}
}

func (r *recordWriter) write(plain []byte) error {
	ns := r.aead.NonceSize()
	r.buf = append(r.buf[:0], make([]byte, ns)...)
	if _, err := rand.Read(r.buf[:ns]); err != nil {
		return err
	}
	r.buf = r.aead.Seal(r.buf, r.buf[:ns], plain, recordAD(r.tenant, r.split, r.n))
	r.n++
	enc := base64.StdEncoding.AppendEncode(nil, r.buf)
	if _, err := r.w.Write(append(enc, '\n')); err != nil {
		return fmt.Errorf("write %s split: %w", r.split, err)
	}
	return nil
}

func sealBlob(key, ad, plain []byte) []byte {
	aead := newAEAD(key)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return aead.Seal(nonce, nonce, plain, ad)
}

func openBlob(key, ad, blob []byte) ([]byte, error) {
	aead := newAEAD(key)
	if len(blob) < aead.NonceSize() {
		return nil, errors.New("too short")
	}
	return aead.Open(nil, blob[:aead.NonceSize()], blob[aead.NonceSize():], ad)
}

// Manifest returns the manifest of a sealed tenant.
func (s *Store) Manifest(name string) (*Manifest, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.ManifestPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, refusal.Wrap(refusal.Seal, name, fmt.Sprintf("tenant %s is %v in %s", name, ErrNotSealed, s.home), ErrNotSealed)
	}
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, refusal.New(refusal.Reseal, name, fmt.Sprintf("manifest %s is damaged (%v)", s.ManifestPath(name), err))
	}
	if m.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("manifest %s has format version %d, this fapo reads %d; re-seal the tenant or use a matching fapo", s.ManifestPath(name), m.FormatVersion, FormatVersion)
	}
	return &m, nil
}

// ReadSplit streams the cases of a held-out split to fn in sealed order.
// Train is not in the store: read the tenant's data/train.jsonl.
func (s *Store) ReadSplit(ctx context.Context, name string, split Split, fn func(Case) error) error {
	if !split.HeldOut() {
		return fmt.Errorf("split %q is not in the sealed store: the held-out splits are validation and test (train is the tenant's data/train.jsonl)", split)
	}
	m, err := s.Manifest(name)
	if err != nil {
		return err
	}
	key, err := s.readKey(name)
	if err != nil {
		return err
	}
	path := s.splitPath(name, split)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read sealed %s split: %w; re-seal the tenant", split, err)
	}
	defer func() { _ = f.Close() }()
	aead := newAEAD(key)
	var i uint64
	var buf []byte
	err = scanLines(f, path, func(line int, b []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		buf, err = base64.StdEncoding.AppendDecode(buf[:0], b)
		if err != nil || len(buf) < aead.NonceSize() {
			return &LineError{File: path, Line: line, Err: errors.New("sealed record is not valid base64; the file was modified: re-seal the tenant")}
		}
		plain, err := aead.Open(nil, buf[:aead.NonceSize()], buf[aead.NonceSize():], recordAD(name, split, i))
		if err != nil {
			return &LineError{File: path, Line: line, Err: fmt.Errorf("sealed record failed authentication: the file was modified, or %s is not the key it was sealed with", s.keyPath(name))}
		}
		i++
		c, err := parseCase(plain)
		if err != nil {
			return &LineError{File: path, Line: line, Err: err}
		}
		return fn(c)
	})
	if err != nil {
		return err
	}
	if want := m.Counts.Of(split); int(i) != want {
		return fmt.Errorf("sealed %s split of tenant %s has %d cases, the manifest says %d: the file was truncated or replaced; re-seal the tenant", split, name, i, want)
	}
	return nil
}

// Fingerprints returns the leak-scan fingerprints made when the tenant was
// sealed.
func (s *Store) Fingerprints(ctx context.Context, name string) (*Fingerprints, error) {
	if _, err := s.Manifest(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key, err := s.readKey(name)
	if err != nil {
		return nil, err
	}
	blob, err := os.ReadFile(s.fingerprintPath(name))
	if err != nil {
		return nil, fmt.Errorf("read fingerprints: %w; re-seal the tenant", err)
	}
	plain, err := openBlob(key, []byte(fingerprintAD(name)), blob)
	if err != nil {
		return nil, fmt.Errorf("fingerprints %s failed authentication: the file was modified; re-seal the tenant", s.fingerprintPath(name))
	}
	fp, err := unmarshalFingerprints(plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; re-seal the tenant", s.fingerprintPath(name), err)
	}
	return fp, nil
}

// StrataNames returns the stratum values of a manifest in sorted order.
func (m *Manifest) StrataNames() []string {
	out := make([]string, 0, len(m.Strata))
	for k := range m.Strata {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
