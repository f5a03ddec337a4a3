package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/airlock-project/airlock/catalog"
)

// Output is the destination of a bundle being written: one file, or a set
// of volumes. Nothing appears under the final names until Commit. It is not
// safe for concurrent use, but sequential writes may come from any
// goroutine (the zstd encoder writes from its own).
type Output interface {
	io.Writer
	// Commit syncs everything written to stable storage and publishes it
	// under the final names. After a successful Commit, Abort does nothing.
	Commit() error
	// Abort removes everything written, temporary or (after a failed
	// Commit) final. It is safe to call more than once, and after Commit.
	Abort() error
	// Paths returns the final paths of the bundle's files: the file, or the
	// volumes in order followed by NAME.sha256. It is complete after Commit.
	Paths() []string
}

// MinSplit is the smallest volume size CreateFile accepts, and MaxVolumes
// the most volumes a bundle may have.
const (
	MinSplit   = 64 << 10
	MaxVolumes = 999
)

const partialSuffix = ".partial"

// CreateFile creates the destination of a bundle at path.
//
// With split <= 0 the bundle is one file, written as path.partial and, on
// Commit, synced and renamed to path (replacing it).
//
// With split > 0 (at least MinSplit) the bundle is cut into volumes
// path.001, path.002, … of split bytes each (the last one shorter), whose
// concatenation is the bundle, plus path.sha256: one line
// "<sha256 hex>  <volume basename>" per volume, so that `sha256sum -c`
// checks them. Volumes are written as path.NNN.partial and renamed on
// Commit; path.sha256 is renamed last, and stale volumes of an earlier
// bundle with more volumes under the same name are removed.
func CreateFile(path string, split int64) (Output, error) {
	if split > 0 && split < MinSplit {
		return nil, fmt.Errorf("%w: volume size %d is under the minimum of %d bytes", ErrSizeSyntax, split, MinSplit)
	}
	if split <= 0 {
		tmp := path + partialSuffix
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create bundle: %w", err)
		}
		return &fileOutput{path: path, tmp: tmp, f: f}, nil
	}
	v := &volumeOutput{base: path, split: split}
	if err := v.openNext(); err != nil {
		return nil, err
	}
	return v, nil
}

// fileOutput writes one file.
type fileOutput struct {
	path, tmp string
	f         *os.File
	committed bool
}

func (o *fileOutput) Write(p []byte) (int, error) {
	if o.f == nil {
		return 0, errors.New("bundle output is closed")
	}
	return o.f.Write(p)
}

func (o *fileOutput) Commit() error {
	if o.f == nil {
		return errors.New("bundle output is closed")
	}
	f := o.f
	o.f = nil
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write bundle %s: %w", o.tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write bundle %s: %w", o.tmp, err)
	}
	if err := os.Rename(o.tmp, o.path); err != nil {
		return fmt.Errorf("publish bundle: %w", err)
	}
	o.committed = true
	return syncDir(filepath.Dir(o.path))
}

func (o *fileOutput) Abort() error {
	if o.committed {
		return nil
	}
	if o.f != nil {
		o.f.Close()
		o.f = nil
	}
	if err := os.Remove(o.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove partial bundle: %w", err)
	}
	return nil
}

func (o *fileOutput) Paths() []string { return []string{o.path} }

// volumeOutput writes volumes and their sha256 list.
type volumeOutput struct {
	base  string
	split int64

	cur  *os.File
	curN int64
	h    hash.Hash
	vols []volumeFile

	renamed   []string // final names published by a failed Commit
	committed bool
	closed    bool
}

type volumeFile struct {
	final, tmp string
	sum        catalog.Digest
}

func volumeName(base string, i int) string { return fmt.Sprintf("%s.%03d", base, i) }

func (o *volumeOutput) Write(p []byte) (int, error) {
	if o.closed {
		return 0, errors.New("bundle output is closed")
	}
	var total int
	for len(p) > 0 {
		if o.curN == o.split {
			if err := o.finishCurrent(); err != nil {
				return total, err
			}
			if err := o.openNext(); err != nil {
				return total, err
			}
		}
		k := min(int64(len(p)), o.split-o.curN)
		n, err := o.cur.Write(p[:k])
		o.h.Write(p[:n])
		o.curN += int64(n)
		total += n
		if err != nil {
			return total, fmt.Errorf("write bundle volume %s: %w", o.vols[len(o.vols)-1].tmp, err)
		}
		p = p[n:]
	}
	return total, nil
}

func (o *volumeOutput) openNext() error {
	i := len(o.vols) + 1
	if i > MaxVolumes {
		return fmt.Errorf("%w: the bundle needs more than %d volumes of %d bytes: choose a larger --split", ErrSizeSyntax, MaxVolumes, o.split)
	}
	final := volumeName(o.base, i)
	tmp := final + partialSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("create bundle volume: %w", err)
	}
	o.cur, o.curN, o.h = f, 0, sha256.New()
	o.vols = append(o.vols, volumeFile{final: final, tmp: tmp})
	return nil
}

// finishCurrent syncs and closes the current volume and records its digest.
func (o *volumeOutput) finishCurrent() error {
	f := o.cur
	o.cur = nil
	v := &o.vols[len(o.vols)-1]
	v.sum = catalog.SumOf(o.h)
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write bundle volume %s: %w", v.tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write bundle volume %s: %w", v.tmp, err)
	}
	return nil
}

func (o *volumeOutput) sumsPath() string { return o.base + ".sha256" }

func (o *volumeOutput) Commit() error {
	if o.closed {
		return errors.New("bundle output is closed")
	}
	o.closed = true
	if err := o.finishCurrent(); err != nil {
		return err
	}
	var list bytes.Buffer
	for _, v := range o.vols {
		fmt.Fprintf(&list, "%s  %s\n", v.sum, filepath.Base(v.final))
	}
	sumsTmp := o.sumsPath() + partialSuffix
	if err := writeFileSync(sumsTmp, list.Bytes()); err != nil {
		return err
	}
	for _, v := range o.vols {
		if err := os.Rename(v.tmp, v.final); err != nil {
			return fmt.Errorf("publish bundle volume: %w", err)
		}
		o.renamed = append(o.renamed, v.final)
	}
	for i := len(o.vols) + 1; i <= MaxVolumes; i++ {
		err := os.Remove(volumeName(o.base, i))
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("remove stale bundle volume: %w", err)
		}
	}
	if err := os.Rename(sumsTmp, o.sumsPath()); err != nil {
		return fmt.Errorf("publish bundle volume list: %w", err)
	}
	o.committed = true
	return syncDir(filepath.Dir(o.base))
}

func (o *volumeOutput) Abort() error {
	if o.committed {
		return nil
	}
	o.closed = true
	if o.cur != nil {
		o.cur.Close()
		o.cur = nil
	}
	var errs []error
	remove := func(p string) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for _, v := range o.vols {
		remove(v.tmp)
	}
	for _, p := range o.renamed {
		remove(p)
	}
	o.renamed = nil
	remove(o.sumsPath() + partialSuffix)
	if len(errs) > 0 {
		return fmt.Errorf("remove partial bundle: %w", errors.Join(errs...))
	}
	return nil
}

func (o *volumeOutput) Paths() []string {
	p := make([]string, 0, len(o.vols)+1)
	for _, v := range o.vols {
		p = append(p, v.final)
	}
	return append(p, o.sumsPath())
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

var (
	sizeTerm    = regexp.MustCompile(`^([0-9]+)([a-z]*)$`)
	splitNumber = regexp.MustCompile(`[0-9]\s+[0-9]`)
)

// ParseSize parses a size such as "123", "700MiB", "1G" or "4GiB-1", for
// --split. A size is a decimal number with an optional unit — B;
// K, KiB, M, MiB, G, GiB, T, TiB as powers of 1024; KB, MB, GB, TB as powers
// of 1000; case-insensitive — optionally followed by "+N" or "-N" (N itself
// a size) to adjust it. Spaces around units and signs are ignored. The result must be positive.
// Errors wrap ErrSizeSyntax (usage class).
func ParseSize(s string) (int64, error) {
	bad := func(why string) (int64, error) {
		return 0, fmt.Errorf("%w %q: %s (e.g. 700MiB, 1G, 4GiB-1)", ErrSizeSyntax, shorten(s), why)
	}
	if splitNumber.MatchString(s) {
		return bad("spaces inside a number")
	}
	t := strings.ToLower(strings.Join(strings.Fields(s), ""))
	if t == "" {
		return bad("empty")
	}
	head, tail, sign := t, "", int64(0)
	if i := strings.IndexAny(t, "+-"); i >= 0 {
		head, tail = t[:i], t[i+1:]
		sign = 1
		if t[i] == '-' {
			sign = -1
		}
	}
	n, ok := parseSizeTerm(head)
	if !ok {
		return bad("want a number with an optional unit")
	}
	if sign != 0 {
		adj, ok := parseSizeTerm(tail)
		if !ok {
			return bad("want a number with an optional unit after + or -")
		}
		if sign > 0 && n > math.MaxInt64-adj {
			return bad("too large")
		}
		n += sign * adj
	}
	if n <= 0 {
		return bad("must be positive")
	}
	return n, nil
}

func parseSizeTerm(s string) (int64, bool) {
	m := sizeTerm.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return 0, false
	}
	var mult int64
	switch m[2] {
	case "", "b":
		mult = 1
	case "k", "kib":
		mult = 1 << 10
	case "m", "mib":
		mult = 1 << 20
	case "g", "gib":
		mult = 1 << 30
	case "t", "tib":
		mult = 1 << 40
	case "kb":
		mult = 1e3
	case "mb":
		mult = 1e6
	case "gb":
		mult = 1e9
	case "tb":
		mult = 1e12
	default:
		return 0, false
	}
	if n > math.MaxInt64/mult {
		return 0, false
	}
	return n * mult, true
}

var volumeSuffix = regexp.MustCompile(`^(.+)\.([0-9]{3})$`)

// maxSumsFile bounds NAME.sha256 (MaxVolumes lines, generously).
const maxSumsFile = 1 << 20

// Open opens a bundle for reading, for NewReader. The caller closes it.
//
// path is a bundle file, or the first volume NAME.001 of a split bundle.
// For volumes, NAME.sha256 must exist and every volume it lists must exist:
// the first missing one is named up front. The reader returned streams the
// volumes in order, hashing each as it goes and comparing it with
// NAME.sha256 at its end; a mismatch fails the read with a *VolumeError
// naming the volume. The reader implements VolumeChecker: when a Reader
// over it finds damage, it has the current volume hashed to its end, so that
// a damaged volume is named rather than reported as a damaged bundle. Give
// it to NewReader as is, or through a wrapper that forwards CheckVolume.
//
// Any other volume (NAME.002, …) is refused with a message to pass NAME.001.
// A path ending in a dot and three digits is always taken for a volume.
func Open(path string) (io.ReadCloser, error) {
	m := volumeSuffix.FindStringSubmatch(path)
	if m == nil {
		f, err := os.Open(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				if _, serr := os.Stat(volumeName(path, 1)); serr == nil {
					return nil, &ArgError{Path: path, Problem: fmt.Sprintf("no such file, but %s exists: pass the first volume of the split bundle, %s", volumeName(path, 1), volumeName(path, 1))}
				}
			}
			var pe *fs.PathError
			if errors.As(err, &pe) && pe.Path == path {
				err = pe.Err // the message names path already
			}
			return nil, fmt.Errorf("bundle %s: %w", path, err)
		}
		// A pipe or a device (/dev/stdin, a tape) is read as one stream and
		// verified all the same; only a directory is a mistake.
		if st, err := f.Stat(); err != nil || st.IsDir() {
			f.Close()
			return nil, &ArgError{Path: path, Problem: "a directory, not a bundle file: pass the bundle file, or the first volume NAME.001 of a split bundle"}
		}
		return f, nil
	}
	base := m[1]
	if m[2] != "001" {
		return nil, &ArgError{Path: path, Problem: "not the first volume of a split bundle: pass " + volumeName(base, 1)}
	}
	vols, err := readSums(base)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, v := range vols {
		st, err := os.Stat(v.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, v.path)
		case err != nil:
			return nil, fmt.Errorf("open bundle volume: %w", err)
		case !st.Mode().IsRegular():
			return nil, &VolumeError{Volume: v.path, Err: fmt.Errorf("%w: not a regular file", ErrVolume)}
		}
	}
	if len(missing) > 0 {
		also := ""
		if len(missing) > 1 {
			also = "; also missing: " + strings.Join(missing[1:], ", ")
		}
		return nil, &VolumeError{Volume: missing[0], Err: fmt.Errorf("%w: missing (%s lists %d volumes)%s", ErrVolume, base+".sha256", len(vols), also)}
	}
	return &volumeReader{vols: vols, sums: base + ".sha256"}, nil
}

type volumeEntry struct {
	path string
	sum  catalog.Digest
}

// readSums reads and checks NAME.sha256: lines "<hex>  NAME.NNN" (or with
// " *" as sha256sum writes in binary mode), numbered from 001 in order.
func readSums(base string) ([]volumeEntry, error) {
	sums := base + ".sha256"
	f, err := os.Open(sums)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &VolumeError{Volume: sums, Err: fmt.Errorf("%w: missing: it lists the volumes of %s", ErrVolume, filepath.Base(base))}
	}
	if err != nil {
		return nil, fmt.Errorf("open bundle volume list: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSumsFile+1))
	if err != nil {
		return nil, fmt.Errorf("read bundle volume list: %w", err)
	}
	bad := func(format string, args ...any) error {
		return &VolumeError{Volume: sums, Err: fmt.Errorf("%w: %s", ErrVolume, fmt.Sprintf(format, args...))}
	}
	if len(data) > maxSumsFile {
		return nil, bad("over %d bytes", maxSumsFile)
	}
	var vols []volumeEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		i := len(vols) + 1
		want := filepath.Base(volumeName(base, i))
		if len(text) < 66 || (text[64:66] != "  " && text[64:66] != " *") {
			return nil, bad("line %d: want \"<sha256>  %s\"", line, want)
		}
		d, err := catalog.ParseDigest(text[:64])
		if err != nil {
			return nil, bad("line %d: %v", line, err)
		}
		if text[66:] != want {
			return nil, bad("line %d: lists %q where %q was expected", line, shorten(text[66:]), want)
		}
		if i > MaxVolumes {
			return nil, bad("more than %d volumes", MaxVolumes)
		}
		vols = append(vols, volumeEntry{path: volumeName(base, i), sum: d})
	}
	if err := sc.Err(); err != nil {
		return nil, bad("%v", err)
	}
	if len(vols) == 0 {
		return nil, bad("lists no volumes")
	}
	return vols, nil
}

// volumeReader streams the volumes in order, verifying each at its end.
type volumeReader struct {
	vols []volumeEntry
	sums string
	i    int
	f    *os.File
	h    hash.Hash
	err  error
}

func (v *volumeReader) Read(p []byte) (int, error) {
	for v.err == nil {
		if v.f == nil {
			if v.i == len(v.vols) {
				return 0, io.EOF
			}
			f, err := os.Open(v.vols[v.i].path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					v.err = &VolumeError{Volume: v.vols[v.i].path, Err: fmt.Errorf("%w: missing (listed in %s)", ErrVolume, v.sums)}
				} else {
					v.err = fmt.Errorf("open bundle volume: %w", err)
				}
				break
			}
			v.f, v.h = f, sha256.New()
		}
		n, err := v.f.Read(p)
		v.h.Write(p[:n])
		if err == io.EOF {
			if verr := v.endVolume(); verr != nil {
				v.err = verr
				return 0, verr
			}
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			v.err = fmt.Errorf("read bundle volume %s: %w", v.vols[v.i].path, err)
			return n, v.err
		}
		return n, nil
	}
	return 0, v.err
}

// endVolume closes the current volume and checks its digest.
func (v *volumeReader) endVolume() *VolumeError {
	v.f.Close()
	v.f = nil
	e := v.vols[v.i]
	v.i++
	if got := catalog.SumOf(v.h); got != e.sum {
		return &VolumeError{Volume: e.path, Err: fmt.Errorf("%w: damaged: its sha256 is %s, %s lists %s", ErrVolume, got.Short(), v.sums, e.sum.Short())}
	}
	return nil
}

// CheckVolume implements VolumeChecker.
func (v *volumeReader) CheckVolume() error {
	if v.f == nil {
		return nil
	}
	if _, err := io.Copy(v.h, v.f); err != nil {
		return nil
	}
	if verr := v.endVolume(); verr != nil {
		v.err = verr
		return verr
	}
	v.err = errors.New("bundle volume reader was checked and is spent")
	return nil
}

// Close closes the current volume.
func (v *volumeReader) Close() error {
	if v.f != nil {
		err := v.f.Close()
		v.f = nil
		return err
	}
	return nil
}
