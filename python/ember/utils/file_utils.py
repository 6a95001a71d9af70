"""Files: Keras's `get_file` (download once, verify, cache, extract) and atomic writes.

The cache is Keras's own: `$KERAS_HOME/datasets`, else `~/.keras/datasets` (or
`/tmp/.keras/datasets` when the home directory is not writable), so a file that a Keras
install already fetched is found here with no download. Every file lands by rename:
a download goes to a temporary file beside its destination, is checked, and only then
takes the real name; an extraction goes to a temporary directory first. An interrupted
download or extraction leaves nothing behind under the real name.
"""
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import zipfile

_CHUNK = 1 << 16


class DownloadError(OSError):
    """A file could not be fetched (no network, HTTP error, transfer cut short)."""


def keras_home():
    """`$KERAS_HOME`, else `~/.keras` (`/tmp/.keras` when the home is not writable)."""
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def cache_directory(cache_subdir="datasets", cache_dir=None):
    """The directory get_file caches into (created if needed), as Keras chooses it."""
    base = os.path.expanduser(cache_dir if cache_dir is not None else keras_home())
    try:
        os.makedirs(base, exist_ok=True)
    except OSError:  # not creatable (a read-only parent, a file in the way): fall back
        pass
    if not (os.path.isdir(base) and os.access(base, os.W_OK)):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    datadir = os.path.join(base, cache_subdir)
    os.makedirs(datadir, exist_ok=True)
    return datadir


# Temporary files of atomic_write: ".<name>.<pid>.<random>.ember-tmp" beside the target.
_TMP_SUFFIX = ".ember-tmp"


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


def remove_stale_temporaries(directory):
    """Removes atomic_write's temporary files in `directory` whose writer is gone (a
    process killed mid-save, which no `finally` could clean up after)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):
            continue
        parts = name[:-len(_TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not _pid_alive(pid):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def atomic_write(path, write):
    """Calls write(file) on a temporary file in path's directory, then renames it to
    path (fsync'd first). On any error the temporary file is removed and path keeps
    whatever it held before. The temporary file's name carries the writer's process id,
    so that a later save into the directory removes one left by a killed process."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(directory)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.",
                               suffix=_TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _hasher(algorithm, file_hash=None):
    """Keras's rule: 'auto' means sha256 for a 64-digit hash, md5 otherwise."""
    if algorithm == "sha256" or (algorithm == "auto" and file_hash is not None
                                 and len(file_hash) == 64):
        return hashlib.sha256()
    if algorithm in ("md5", "auto"):
        return hashlib.md5()
    raise ValueError(f"hash_algorithm must be 'auto', 'sha256' or 'md5'. Received: {algorithm!r}")


def hash_file(fpath, algorithm="sha256", chunk_size=_CHUNK):
    """The hex digest of a file ('sha256' or 'md5')."""
    hasher = _hasher(algorithm)
    with open(fpath, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def validate_file(fpath, file_hash, algorithm="auto", chunk_size=_CHUNK):
    """True when the file's digest equals file_hash."""
    hasher = _hasher(algorithm, file_hash)
    with open(fpath, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest() == str(file_hash)


class _Progress:
    """Keras's download progress bar (bytes as steps); a plain byte count when the
    server does not say how long the file is."""

    def __init__(self, total):
        from ..callbacks import Progbar
        self.total = total
        self.bar = Progbar(total) if total else None
        self.done = 0

    def update(self, done):
        self.done = done
        if self.bar is not None and done < self.total:
            self.bar.update(done)

    def finish(self):
        if self.bar is not None:
            self.bar.update(self.done, finalize=True)
        else:
            sys.stdout.write(f"{self.done} bytes\n")
            sys.stdout.flush()


def _offline_help(origin, target, file_hash, algorithm):
    digest = f" ({algorithm} {file_hash})" if file_hash else ""
    return (f"Without network access, download {origin}{digest} on another machine and "
            f"put it at {target}")


def _download(origin, target, file_hash, algorithm):
    """Streams origin into target by way of a temporary file, checking the length the
    server announced and the hash; target appears only when both are right."""
    import http.client  # here, not at import time: urllib.request is slow to import
    import urllib.error
    import urllib.request
    print(f"Downloading data from {origin}")
    hasher = _hasher(algorithm, file_hash)
    name = hasher.name

    def write(f):
        try:
            response = urllib.request.urlopen(origin, timeout=60)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
            reason = (f"HTTP {e.code} -- {e.msg}" if isinstance(e, urllib.error.HTTPError)
                      else getattr(e, "reason", None) or e)
            raise DownloadError(f"URL fetch failure on {origin}: {reason}. "
                                + _offline_help(origin, target, file_hash, name)) from e
        with response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            progress = _Progress(total)
            done = 0
            try:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    progress.update(done)
            except (OSError, http.client.HTTPException) as e:
                raise DownloadError(f"Download of {origin} failed after {done} bytes: {e!r}. "
                                    + _offline_help(origin, target, file_hash, name)) from e
            if total is not None and done != total:
                raise DownloadError(f"Download of {origin} stopped after {done} of {total} "
                                    "bytes. " + _offline_help(origin, target, file_hash, name))
            progress.finish()
        if file_hash is not None and hasher.hexdigest() != str(file_hash):
            raise ValueError(f"Incomplete or corrupted file detected: the {name} of the "
                             f"download from {origin} is {hasher.hexdigest()}, expected "
                             f"{file_hash}. The file was discarded.")

    atomic_write(target, write)


def _inside(base, name):
    path = os.path.realpath(os.path.join(base, name))
    return os.path.commonpath([path, base]) == base


def _safe_members(archive, base):
    base = os.path.realpath(base)
    for member in archive.getmembers():
        ok = _inside(base, member.name)
        if member.issym() or member.islnk():
            target = member.linkname if member.islnk() else os.path.join(
                os.path.dirname(member.name), member.linkname)
            ok = ok and _inside(base, target)
        if not ok:
            raise ValueError(f"Archive member {member.name!r} would be written outside "
                             f"{base}; refusing to extract.")
        yield member


def extract_archive(file_path, path=".", archive_format="auto"):
    """Extracts a tar (any compression) or zip archive into path, by way of a
    temporary directory that is renamed to path once complete. Returns True when
    the file was an archive of an accepted format."""
    if archive_format is None:
        return False
    formats = ["tar", "zip"] if archive_format == "auto" else (
        [archive_format] if isinstance(archive_format, str) else list(archive_format))
    for kind in formats:
        if kind not in ("tar", "zip"):
            raise ValueError(f"archive_format must be 'auto', 'tar', 'zip', a list of them "
                             f"or None. Received: {archive_format!r}")
        if kind == "tar" and tarfile.is_tarfile(file_path):
            opener = tarfile.open
        elif kind == "zip" and zipfile.is_zipfile(file_path):
            opener = zipfile.ZipFile
        else:
            continue
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", dir=parent)
        try:
            with opener(file_path) as archive:
                if opener is zipfile.ZipFile:
                    archive.extractall(tmp)  # zipfile strips absolute and '..' parts
                else:
                    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                    archive.extractall(tmp, members=_safe_members(archive, tmp), **kwargs)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True
    return False


def get_file(fname=None, origin=None, untar=False, md5_hash=None, file_hash=None,
             cache_subdir="datasets", hash_algorithm="auto", extract=False,
             archive_format="auto", cache_dir=None, force_download=False):
    """Downloads a file from a URL unless it is already in the cache; returns its path.

    As Keras 3: the file goes to `cache_dir/cache_subdir/fname` (cache_dir defaults to
    `$KERAS_HOME` or `~/.keras`). A cached file whose hash does not match is deleted
    and fetched again; a download whose hash does not match is discarded and raises
    ValueError. With `extract=True` (or `untar=True`) the archive is extracted and the
    extraction directory is returned: `fname` without a dot names that directory
    (the archive is kept as `fname_archive`); `fname` with a dot is the archive's name
    and the directory is `<fname up to its first dot>_extracted`. Unlike Keras, an
    archive that is already extracted is not extracted again on every call.
    Offline, a missing file raises DownloadError (an OSError) saying where to put it.
    """
    if origin is None:
        raise ValueError('Please specify the "origin" argument (URL of the file to download).')
    if md5_hash is not None and file_hash is None:
        file_hash, hash_algorithm = md5_hash, "md5"
    _hasher(hash_algorithm, file_hash)  # validates hash_algorithm early
    datadir = cache_directory(cache_subdir, cache_dir)
    given = fname is not None and os.fspath(fname) != ""
    fname = os.fspath(fname) if given else os.path.basename(urllib.parse.urlsplit(origin).path)
    if not fname:
        raise ValueError(f"Can't parse the file name from the origin provided: {origin!r}. "
                         "Please specify the `fname` argument.")
    if os.sep in fname or (os.altsep and os.altsep in fname):
        raise ValueError("Paths are not accepted as the `fname` argument; use `cache_dir` "
                         f"for the file's parent directory. Received: fname={fname!r}")
    extraction_dir = None
    if extract or untar:
        if given and "." in fname:
            target = os.path.join(datadir, fname)
            extraction_dir = os.path.join(datadir, fname[:fname.find(".")] + "_extracted")
        else:
            extraction_dir = os.path.join(datadir, fname)
            target = os.path.join(datadir, fname + "_archive")
    else:
        target = os.path.join(datadir, fname)

    download = force_download or not os.path.exists(target)
    if not download and file_hash is not None and not validate_file(target, file_hash,
                                                                    hash_algorithm):
        print(f"A local file was found at {target}, but its hash does not match "
              f"{file_hash}: it is incomplete or outdated. Deleting it and downloading "
              "the file again.")
        os.remove(target)
        download = True
    if download:
        _download(origin, target, file_hash, hash_algorithm)
    if extraction_dir is None:
        return target
    if download or not os.path.isdir(extraction_dir):
        fmt = "tar" if untar else archive_format
        if not extract_archive(target, extraction_dir, fmt):
            raise ValueError(f"{target} is not a {fmt if fmt != 'auto' else 'tar or zip'} "
                             "archive; could not extract it.")
    return extraction_dir
