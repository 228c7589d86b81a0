// Command fiatcheck verifies a Fiat transparency log with Go's reference
// implementations, golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog.
//
// It is an independent client: it imports only the standard library and those
// two packages, and it speaks C2SP tlog-tiles over HTTP.
//
//	fiatcheck -url http://127.0.0.1:8750/log -vkey VKEY [-old-checkpoint FILE]
//	fiatcheck -vkey VKEY -proof FILE -entry FILE [-proof FILE -entry FILE ...] [-url URL [-skip-log]]
//
// With -url it fetches <url>/checkpoint, opens it with note.Open, recomputes
// the root from the tiles with tlog.TileHashReader and tlog.TreeHash, fetches
// every entry bundle, recomputes every stored hash from the entries with
// tlog.StoredHashesForRecordHash, compares every hash tile byte for byte with
// tlog.ReadTileData, and checks tlog.ProveRecord + tlog.CheckRecord for the
// entries (all of them up to -all-proofs, a sample beyond). With
// -old-checkpoint it checks tlog.ProveTree + tlog.CheckTree from the old tree
// to the new one. Each -proof/-entry pair is a c2sp.org/tlog-proof@v1 file and
// the entry it proves: its checkpoint is checked with note.Open, its path with
// tlog.CheckRecord and, given -url, against Go's own tlog.ProveRecord over the
// served tiles. -skip-log skips the whole-log walk and only checks the proofs.
//
// It prints a JSON summary on stdout and exits 0, or prints "fiatcheck: FAIL
// ..." on stderr and exits 1.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// tileHeight is fixed by C2SP tlog-tiles: tiles are 2^8 = 256 hashes wide.
const tileHeight = 8

const proofHeader = "c2sp.org/tlog-proof@v1"

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "fiatcheck: FAIL "+format+"\n", args...)
	os.Exit(1)
}

func usage(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "fiatcheck: usage: "+format+"\n", args...)
	os.Exit(2)
}

// checkpoint is a parsed C2SP tlog-checkpoint note text.
type checkpoint struct {
	Origin     string
	Tree       tlog.Tree
	Extensions []string
}

// parseCheckpoint parses the note text per c2sp.org/tlog-checkpoint:
// origin, decimal tree size, base64 root hash, then optional non-empty extension lines.
func parseCheckpoint(text string) (checkpoint, error) {
	var cp checkpoint
	if !strings.HasSuffix(text, "\n") {
		return cp, errors.New("checkpoint text does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return cp, fmt.Errorf("checkpoint has %d lines, want at least 3", len(lines))
	}
	cp.Origin = lines[0]
	if cp.Origin == "" {
		return cp, errors.New("checkpoint origin line is empty")
	}
	sizeStr := lines[1]
	n, err := strconv.ParseInt(sizeStr, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != sizeStr {
		return cp, fmt.Errorf("checkpoint tree size %q is not a canonical decimal", sizeStr)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize || base64.StdEncoding.EncodeToString(root) != lines[2] {
		return cp, fmt.Errorf("checkpoint root %q is not the canonical base64 of %d bytes", lines[2], tlog.HashSize)
	}
	for _, ext := range lines[3:] {
		if ext == "" {
			return cp, errors.New("checkpoint has an empty extension line")
		}
	}
	cp.Tree.N = n
	copy(cp.Tree.Hash[:], root)
	cp.Extensions = lines[3:]
	return cp, nil
}

// openCheckpoint verifies a signed checkpoint note with the log's key and parses it.
func openCheckpoint(msg []byte, verifier note.Verifier, what string) checkpoint {
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("%s: note.Open: %v", what, err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		fail("%s: %v", what, err)
	}
	if cp.Origin != verifier.Name() {
		fail("%s: origin %q is not the verifier name %q", what, cp.Origin, verifier.Name())
	}
	return cp
}

// emptyRoot is the RFC 6962 hash of the empty tree, SHA-256 of nothing.
// (tlog.TreeHash defines the empty tree's hash as all zeroes instead.)
func emptyRoot() tlog.Hash {
	return tlog.Hash(sha256.Sum256(nil))
}

// client fetches C2SP tlog-tiles resources and caches immutable ones.
type client struct {
	base  string
	http  *http.Client
	mu    sync.Mutex
	cache map[string][]byte
	gets  int
}

func (c *client) get(path string) ([]byte, error) {
	c.mu.Lock()
	if data, ok := c.cache[path]; ok {
		c.mu.Unlock()
		return data, nil
	}
	c.gets++
	c.mu.Unlock()
	resp, err := c.http.Get(c.base + "/" + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(data))
	}
	if path != "checkpoint" {
		c.mu.Lock()
		c.cache[path] = data
		c.mu.Unlock()
	}
	return data, nil
}

// c2spPath maps a Go tile to its C2SP tlog-tiles path. Go's Tile.Path() is
// tile/<H>/<L>/<N>[.p/<W>], with level -1 spelled "data"; C2SP fixes H = 8,
// drops that element and spells level -1 "entries".
func c2spPath(t tlog.Tile) string {
	if t.H != tileHeight {
		panic(fmt.Sprintf("tile height %d, want %d", t.H, tileHeight))
	}
	p := t.Path()
	prefix := fmt.Sprintf("tile/%d/", tileHeight)
	if !strings.HasPrefix(p, prefix) {
		panic("unexpected Go tile path " + p)
	}
	rest := strings.TrimPrefix(p, prefix)
	if strings.HasPrefix(rest, "data/") {
		rest = "entries/" + strings.TrimPrefix(rest, "data/")
	}
	return "tile/" + rest
}

// tileReader is a tlog.TileReader over the C2SP HTTP API.
type tileReader struct{ c *client }

func (r tileReader) Height() int { return tileHeight }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.c.get(c2spPath(t))
		if err != nil {
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", c2spPath(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (r tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

// parseBundle decodes a C2SP entry bundle: big-endian uint16 length-prefixed entries.
func parseBundle(data []byte, want int) ([][]byte, error) {
	var entries [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("truncated length prefix after %d entries", len(entries))
		}
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		if len(data) < n {
			return nil, fmt.Errorf("entry %d is truncated", len(entries))
		}
		entries = append(entries, data[:n])
		data = data[n:]
	}
	if len(entries) != want {
		return nil, fmt.Errorf("%d entries, want %d", len(entries), want)
	}
	return entries, nil
}

// memHashes is an in-memory tlog.HashReader over stored hashes.
type memHashes []tlog.Hash

func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m)) {
			return nil, fmt.Errorf("stored hash %d is not available", x)
		}
		out[i] = m[x]
	}
	return out, nil
}

// proofIndexes chooses which entries get a ProveRecord/CheckRecord round trip:
// all of them up to limit, else tile boundaries, the ends and a seeded sample.
func proofIndexes(size int64, limit int, seed int64) []int64 {
	if size <= int64(limit) {
		all := make([]int64, size)
		for i := range all {
			all[i] = int64(i)
		}
		return all
	}
	set := map[int64]bool{}
	add := func(i int64) {
		if i >= 0 && i < size {
			set[i] = true
		}
	}
	for _, b := range []int64{0, 1, 255, 256, 257, 511, 512, 65535, 65536, 65537, size / 2, size - 257, size - 256, size - 2, size - 1} {
		add(b)
	}
	for b := int64(256); b < size; b += 256 {
		if len(set) >= limit/2 {
			break
		}
		add(b - 1)
		add(b)
	}
	rng := rand.New(rand.NewSource(seed))
	for len(set) < limit {
		add(rng.Int63n(size))
	}
	out := make([]int64, 0, len(set))
	for i := range set {
		out = append(out, i)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

type proofSummary struct {
	Index      int64  `json:"index"`
	TreeSize   int64  `json:"tree_size"`
	Root       string `json:"root"`
	PathLength int    `json:"path_length"`
	Extra      bool   `json:"extra"`
	// MatchesGoProof says the path equals Go's own tlog.ProveRecord over the served tiles.
	MatchesGoProof *bool `json:"matches_go_proof,omitempty"`
}

// files is a repeatable string flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

type summary struct {
	OK             bool           `json:"ok"`
	LogChecked     bool           `json:"log_checked"`
	Origin         string         `json:"origin,omitempty"`
	TreeSize       int64          `json:"tree_size"`
	Root           string         `json:"root,omitempty"`
	Extensions     []string       `json:"extensions,omitempty"`
	HashTiles      int            `json:"hash_tiles"`
	EntryBundles   int            `json:"entry_bundles"`
	Entries        int64          `json:"entries"`
	EntriesSHA256  string         `json:"entries_sha256,omitempty"`
	RecordProofs   int            `json:"record_proofs"`
	OldTreeSize    *int64         `json:"old_tree_size,omitempty"`
	ConsistencyLen *int           `json:"consistency_proof_length,omitempty"`
	Proofs         []proofSummary `json:"proofs,omitempty"`
	HTTPGets       int            `json:"http_gets"`
	Seconds        float64        `json:"seconds"`
	Checks         []string       `json:"checks"`
}

func main() {
	url := flag.String("url", "", "the log's prefix URL, e.g. http://127.0.0.1:8750/log")
	vkey := flag.String("vkey", "", "the log's verifier key (note.NewVerifier format)")
	oldCheckpoint := flag.String("old-checkpoint", "", "a previously seen signed checkpoint to prove consistency from")
	var proofFiles, entryFiles files
	flag.Var(&proofFiles, "proof", "a c2sp.org/tlog-proof@v1 file to verify (repeatable)")
	flag.Var(&entryFiles, "entry", "the entry bytes that the -proof in the same position proves (repeatable)")
	skipLog := flag.Bool("skip-log", false, "with -url, only check the -proof files, not the whole log")
	allProofs := flag.Int("all-proofs", 5000, "check ProveRecord/CheckRecord for every entry up to this tree size, a sample of this many beyond")
	seed := flag.Int64("seed", 1, "seed for the sample of record proofs")
	flag.Parse()
	if flag.NArg() != 0 {
		usage("unexpected arguments %q", flag.Args())
	}
	if *vkey == "" {
		usage("-vkey is required")
	}
	if *url == "" && len(proofFiles) == 0 {
		usage("give -url, or -proof with -entry")
	}
	if len(proofFiles) != len(entryFiles) {
		usage("-proof and -entry go in pairs (%d -proof, %d -entry)", len(proofFiles), len(entryFiles))
	}
	if *oldCheckpoint != "" && (*url == "" || *skipLog) {
		usage("-old-checkpoint needs -url and no -skip-log")
	}
	if *skipLog && len(proofFiles) == 0 {
		usage("-skip-log leaves nothing to check without -proof")
	}
	start := time.Now()
	verifier, err := note.NewVerifier(strings.TrimSpace(*vkey))
	if err != nil {
		fail("note.NewVerifier(%q): %v", *vkey, err)
	}
	sum := summary{Checks: []string{"note.NewVerifier"}}
	var c *client
	if *url != "" {
		c = &client{
			base:  strings.TrimSuffix(*url, "/"),
			http:  &http.Client{Timeout: 30 * time.Second},
			cache: map[string][]byte{},
		}
		if !*skipLog {
			checkLog(c, verifier, *oldCheckpoint, *allProofs, *seed, &sum)
		}
	}
	for i := range proofFiles {
		checkProofFile(c, verifier, proofFiles[i], entryFiles[i], &sum)
	}
	if c != nil {
		sum.HTTPGets = c.gets
	}
	sum.OK = true
	sum.Seconds = time.Since(start).Seconds()
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sum); err != nil {
		fail("writing the summary: %v", err)
	}
}

func checkLog(c *client, verifier note.Verifier, oldFile string, allProofs int, seed int64, sum *summary) {
	msg, err := c.get("checkpoint")
	if err != nil {
		fail("fetching the checkpoint: %v", err)
	}
	cp := openCheckpoint(msg, verifier, "checkpoint")
	tree := cp.Tree
	sum.LogChecked = true
	sum.Origin, sum.TreeSize, sum.Root, sum.Extensions = cp.Origin, tree.N, tree.Hash.String(), cp.Extensions
	sum.Checks = append(sum.Checks, "checkpoint: note.Open")

	tr := tileReader{c}
	hr := tlog.TileHashReader(tree, tr)
	if tree.N == 0 {
		if tree.Hash != emptyRoot() {
			fail("empty tree: root %s is not SHA-256(\"\") %s", tree.Hash, emptyRoot())
		}
		sum.Checks = append(sum.Checks, "empty tree root is SHA-256(\"\")")
	} else {
		th, err := tlog.TreeHash(tree.N, hr)
		if err != nil {
			fail("tlog.TreeHash(%d) over the served tiles: %v", tree.N, err)
		}
		if th != tree.Hash {
			fail("tlog.TreeHash(%d) = %s over the served tiles, checkpoint root is %s", tree.N, th, tree.Hash)
		}
		sum.Checks = append(sum.Checks, "tlog.TileHashReader + tlog.TreeHash == checkpoint root")
	}

	// Consistency with a previously seen checkpoint, before the long walk below.
	if oldFile != "" {
		oldMsg, err := os.ReadFile(oldFile)
		if err != nil {
			fail("reading -old-checkpoint: %v", err)
		}
		old := openCheckpoint(oldMsg, verifier, "old checkpoint")
		oldN := old.Tree.N
		sum.OldTreeSize = &oldN
		if oldN > tree.N {
			fail("old checkpoint has tree size %d, larger than the current %d", oldN, tree.N)
		}
		if oldN == 0 {
			if old.Tree.Hash != emptyRoot() {
				fail("old empty tree: root %s is not SHA-256(\"\")", old.Tree.Hash)
			}
			zero := 0
			sum.ConsistencyLen = &zero
			sum.Checks = append(sum.Checks, "old checkpoint: empty tree, trivially consistent")
		} else {
			// The old root must also be what the served tiles say about the old tree.
			oh, err := tlog.TreeHash(oldN, hr)
			if err != nil {
				fail("tlog.TreeHash(%d) for the old tree: %v", oldN, err)
			}
			if oh != old.Tree.Hash {
				fail("old checkpoint root %s, but the current tree's first %d entries hash to %s", old.Tree.Hash, oldN, oh)
			}
			p, err := tlog.ProveTree(tree.N, oldN, hr)
			if err != nil {
				fail("tlog.ProveTree(%d, %d): %v", tree.N, oldN, err)
			}
			if err := tlog.CheckTree(p, tree.N, tree.Hash, oldN, old.Tree.Hash); err != nil {
				fail("tlog.CheckTree(%d -> %d): %v", oldN, tree.N, err)
			}
			l := len(p)
			sum.ConsistencyLen = &l
			sum.Checks = append(sum.Checks, fmt.Sprintf("tlog.ProveTree + tlog.CheckTree %d -> %d", oldN, tree.N))
		}
	}

	// Every entry bundle, then every stored hash recomputed from the entries by Go.
	stored := make(memHashes, 0, tlog.StoredHashCount(tree.N))
	records := make([]tlog.Hash, 0, tree.N)
	entriesDigest := sha256.New()
	for n := int64(0); n*(1<<tileHeight) < tree.N; n++ {
		w := tree.N - n*(1<<tileHeight)
		if w > 1<<tileHeight {
			w = 1 << tileHeight
		}
		t := tlog.Tile{H: tileHeight, L: -1, N: n, W: int(w)}
		data, err := c.get(c2spPath(t))
		if err != nil {
			fail("fetching entry bundle: %v", err)
		}
		entries, err := parseBundle(data, int(w))
		if err != nil {
			fail("entry bundle %s: %v", c2spPath(t), err)
		}
		sum.EntryBundles++
		for _, e := range entries {
			var prefix [2]byte
			binary.BigEndian.PutUint16(prefix[:], uint16(len(e)))
			entriesDigest.Write(prefix[:])
			entriesDigest.Write(e)
			i := int64(len(records))
			rh := tlog.RecordHash(e)
			hashes, err := tlog.StoredHashesForRecordHash(i, rh, stored)
			if err != nil {
				fail("tlog.StoredHashesForRecordHash(%d): %v", i, err)
			}
			if int64(len(stored)) != tlog.StoredHashIndex(0, i) {
				fail("stored hash bookkeeping at record %d", i)
			}
			stored = append(stored, hashes...)
			records = append(records, rh)
		}
	}
	sum.Entries = int64(len(records))
	sum.EntriesSHA256 = fmt.Sprintf("%x", entriesDigest.Sum(nil))
	if sum.Entries != tree.N {
		fail("the entry bundles hold %d entries, the checkpoint says %d", sum.Entries, tree.N)
	}
	if tree.N > 0 {
		th, err := tlog.TreeHash(tree.N, stored)
		if err != nil {
			fail("tlog.TreeHash(%d) over the entries: %v", tree.N, err)
		}
		if th != tree.Hash {
			fail("tlog.TreeHash(%d) = %s recomputed from the entries, checkpoint root is %s", tree.N, th, tree.Hash)
		}
		sum.Checks = append(sum.Checks, "every entry: tlog.RecordHash + tlog.StoredHashes + tlog.TreeHash == checkpoint root")
	}

	// Every hash tile of this tree, byte for byte against Go's own tiles.
	for _, t := range tlog.NewTiles(tileHeight, 0, tree.N) {
		w := tree.N >> uint(tileHeight*t.L)
		if t.N<<tileHeight+int64(t.W) != w && t.W != 1<<tileHeight {
			continue // an intermediate width of the right-most tile; checked below only at the tree's width
		}
		want, err := tlog.ReadTileData(t, stored)
		if err != nil {
			fail("tlog.ReadTileData(%s): %v", t.Path(), err)
		}
		got, err := c.get(c2spPath(t))
		if err != nil {
			fail("fetching hash tile: %v", err)
		}
		if !bytes.Equal(got, want) {
			fail("hash tile %s differs from tlog.ReadTileData", c2spPath(t))
		}
		sum.HashTiles++
	}
	if tree.N > 0 {
		sum.Checks = append(sum.Checks, "every hash tile == tlog.ReadTileData")
	}

	// Inclusion proofs built by Go from the served tiles, checked by Go.
	if tree.N > 0 {
		idx := proofIndexes(tree.N, allProofs, seed)
		var wg sync.WaitGroup
		var once sync.Once
		var firstErr error
		next := make(chan int64)
		for w := 0; w < runtime.NumCPU(); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					p, err := tlog.ProveRecord(tree.N, i, hr)
					if err == nil {
						err = tlog.CheckRecord(p, tree.N, tree.Hash, i, records[i])
					}
					if err != nil {
						once.Do(func() { firstErr = fmt.Errorf("record %d: %v", i, err) })
					}
				}
			}()
		}
		for _, i := range idx {
			next <- i
		}
		close(next)
		wg.Wait()
		if firstErr != nil {
			fail("tlog.ProveRecord/CheckRecord: %v", firstErr)
		}
		sum.RecordProofs = len(idx)
		sum.Checks = append(sum.Checks, fmt.Sprintf("tlog.ProveRecord + tlog.CheckRecord for %d entries", len(idx)))
	}
}

// checkProofFile verifies a c2sp.org/tlog-proof@v1 file for an entry.
func checkProofFile(c *client, verifier note.Verifier, proofPath, entryPath string, sum *summary) {
	data, err := os.ReadFile(proofPath)
	if err != nil {
		fail("reading -proof: %v", err)
	}
	entry, err := os.ReadFile(entryPath)
	if err != nil {
		fail("reading -entry: %v", err)
	}
	split := bytes.Index(data, []byte("\n\n"))
	if split < 0 {
		fail("%s: no empty line before the checkpoint", proofPath)
	}
	head, cpMsg := string(data[:split]), data[split+2:]
	lines := strings.Split(head, "\n")
	if lines[0] != proofHeader {
		fail("%s: first line %q, want %q", proofPath, lines[0], proofHeader)
	}
	lines = lines[1:]
	ps := &proofSummary{}
	if len(lines) > 0 && strings.HasPrefix(lines[0], "extra ") {
		if _, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[0], "extra ")); err != nil {
			fail("%s: bad extra line: %v", proofPath, err)
		}
		ps.Extra = true
		lines = lines[1:]
	}
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "index ") {
		fail("%s: missing the index line", proofPath)
	}
	idxStr := strings.TrimPrefix(lines[0], "index ")
	index, err := strconv.ParseInt(idxStr, 10, 64)
	if err != nil || index < 0 || strconv.FormatInt(index, 10) != idxStr {
		fail("%s: index %q is not a canonical decimal", proofPath, idxStr)
	}
	var path tlog.RecordProof
	for _, l := range lines[1:] {
		h, err := base64.StdEncoding.DecodeString(l)
		if err != nil || len(h) != tlog.HashSize {
			fail("%s: %q is not a base64 hash", proofPath, l)
		}
		var hh tlog.Hash
		copy(hh[:], h)
		path = append(path, hh)
	}
	cp := openCheckpoint(cpMsg, verifier, proofPath+": checkpoint")
	if index >= cp.Tree.N {
		fail("%s: index %d is outside the tree of size %d", proofPath, index, cp.Tree.N)
	}
	if err := tlog.CheckRecord(path, cp.Tree.N, cp.Tree.Hash, index, tlog.RecordHash(entry)); err != nil {
		fail("%s: tlog.CheckRecord(index %d, size %d): %v", proofPath, index, cp.Tree.N, err)
	}
	ps.Index, ps.TreeSize, ps.Root, ps.PathLength = index, cp.Tree.N, cp.Tree.Hash.String(), len(path)
	what := fmt.Sprintf("proof %s (index %d)", proofPath, index)
	sum.Checks = append(sum.Checks, what+": note.Open", what+": tlog.CheckRecord")
	if c != nil {
		// Go's own proof for the same tree, built from the served tiles, must be the same list of hashes.
		goProof, err := tlog.ProveRecord(cp.Tree.N, index, tlog.TileHashReader(cp.Tree, tileReader{c}))
		if err != nil {
			fail("%s: tlog.ProveRecord(%d, %d) over the served tiles: %v", proofPath, cp.Tree.N, index, err)
		}
		same := len(goProof) == len(path)
		for i := 0; same && i < len(path); i++ {
			same = goProof[i] == path[i]
		}
		if !same {
			fail("%s: the path differs from tlog.ProveRecord(%d, %d) over the served tiles", proofPath, cp.Tree.N, index)
		}
		ps.MatchesGoProof = &same
		sum.Checks = append(sum.Checks, what+": path == tlog.ProveRecord over the served tiles")
	}
	sum.Proofs = append(sum.Proofs, *ps)
}
