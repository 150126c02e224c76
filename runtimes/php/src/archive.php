<?php
// The archive form's package: a gzip'd tar read as it arrives (zlib's incremental inflate, tar
// headers parsed here: ustar, pax and GNU long names), hashed byte for byte, and written under
// <workdir>/fn/ as regular files (0600, 0700 when executable) and directories (0700) only.
// No link is ever created, so every path is resolved through directories of our own making: a
// clean relative name cannot leave the directory. Files are created exclusively (an entry cannot
// overwrite another). After a refusal the rest is still read and hashed, so the caller reports a
// tampered archive as DIGEST_MISMATCH rather than as whatever its damage looks like.
// Loaded only for an archive.
declare(strict_types=1);

namespace Fizz;

final class Unsafe extends \Exception
{
    public static function entry(string $name, string $rule): self
    {
        return new self('entry ' . json_encode($name, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE) . ": $rule");
    }
}

const TAR_BLOCK = 512;
const MAX_META_BYTES = 1024 * 1024; // a pax header or GNU long name
const GZIP_SLICE = 8192; // input per inflate call: bounds what one call can expand to

final class Extractor
{
    public ?string $refusal = null;
    private \HashContext $hash;
    private \InflateContext $inflate;
    private bool $gzipEnded = false;
    private bool $tarEnded = false;
    private string $buffer = '';
    private int $gzBytes = 0;
    private int $fileBytes = 0;
    private int $entries = 0;
    private int $trailing = 0;
    /** The entry whose data is being read: what to do with it, bytes left, padding after. */
    private ?array $data = null;
    /** @var resource|null */
    private $file = null;
    private ?array $pax = null;
    private ?string $longName = null;
    /** @var array<string,string> path => 'file' | 'dir' (explicit entries and the dirs they imply) */
    private array $kinds = [];
    /** @var array<string,true> */
    private array $explicit = [];

    public function __construct(private readonly string $dir, private readonly int $maxBytes, private readonly int $maxEntries)
    {
        $this->hash = hash_init('sha256');
        $this->inflate = inflate_init(ZLIB_ENCODING_GZIP);
    }

    public function digest(): string
    {
        return 'sha256:' . hash_final($this->hash);
    }

    /** @param \Closure(): ?string $next @throws HttpError 413 over the byte cap */
    public function run(string $first, \Closure $next): void
    {
        $piece = $first;
        do {
            if ($piece === '') {
                continue;
            }
            $this->gzBytes += strlen($piece);
            if ($this->gzBytes > $this->maxBytes) {
                $this->closeFile();
                throw new HttpError(413, 'PAYLOAD_TOO_LARGE', "the package is over {$this->maxBytes} bytes", close: true);
            }
            hash_update($this->hash, $piece);
            if ($this->refusal === null) {
                try {
                    $this->feed($piece);
                } catch (Unsafe $e) {
                    $this->refusal = $e->getMessage();
                    $this->closeFile();
                }
            }
        } while (($piece = $next()) !== null);
        if ($this->refusal === null) {
            try {
                $this->finish();
            } catch (Unsafe $e) {
                $this->refusal = $e->getMessage();
            }
        }
        $this->closeFile();
    }

    private function feed(string $gz): void
    {
        for ($at = 0, $n = strlen($gz); $at < $n && !$this->gzipEnded; $at += GZIP_SLICE) {
            $out = @inflate_add($this->inflate, substr($gz, $at, GZIP_SLICE), ZLIB_SYNC_FLUSH);
            if ($out === false) {
                throw new Unsafe("archive: not a gzip'd tar");
            }
            $this->gzipEnded = inflate_get_status($this->inflate) === ZLIB_STREAM_END;
            if ($this->tarEnded) {
                // Inflated to the end all the same, so that a damaged gzip is refused; what
                // follows the tar's end (tar's record padding) is bounded.
                $this->trailing += strlen($out);
                if ($this->trailing > MAX_META_BYTES) {
                    throw new Unsafe('archive: over 1 MiB of data after the end of the tar');
                }
                continue;
            }
            $this->buffer .= $out;
            $this->parse();
        }
    }

    private function finish(): void
    {
        if ($this->gzBytes === 0) {
            throw new Unsafe("archive: empty, not a gzip'd tar");
        }
        if (!$this->gzipEnded) {
            throw new Unsafe("archive: truncated, or not a gzip'd tar");
        }
        if (!$this->tarEnded && ($this->data !== null || $this->buffer !== '' || $this->pax !== null || $this->longName !== null)) {
            throw new Unsafe('archive: the tar ends in the middle of an entry');
        }
    }

    private function parse(): void
    {
        while (!$this->tarEnded) {
            if ($this->data !== null) {
                if (!$this->consumeData()) {
                    return;
                }
                continue;
            }
            if (strlen($this->buffer) < TAR_BLOCK) {
                return;
            }
            $block = substr($this->buffer, 0, TAR_BLOCK);
            $this->buffer = substr($this->buffer, TAR_BLOCK);
            if ($block === str_repeat("\0", TAR_BLOCK)) {
                $this->tarEnded = true; // the end-of-archive marker; what follows is ignored
                $this->buffer = '';
                return;
            }
            $this->header($block);
        }
    }

    /** Moves the current entry's data (and its padding) out of the buffer; false when it needs more. */
    private function consumeData(): bool
    {
        $d = &$this->data;
        if ($d['left'] > 0) {
            if ($this->buffer === '') {
                return false;
            }
            $piece = substr($this->buffer, 0, $d['left']);
            $this->buffer = substr($this->buffer, strlen($piece));
            $d['left'] -= strlen($piece);
            if ($d['to'] === 'file') {
                if (fwrite($this->file, $piece) !== strlen($piece)) {
                    throw new \RuntimeException('cannot write the package: disk full?');
                }
            } elseif ($d['to'] === 'meta') {
                $d['meta'] .= $piece;
            }
            if ($d['left'] > 0) {
                return false;
            }
        }
        if (strlen($this->buffer) < $d['pad']) {
            $d['pad'] -= strlen($this->buffer);
            $this->buffer = '';
            return false;
        }
        $this->buffer = substr($this->buffer, $d['pad']);
        $done = $d;
        unset($d);
        $this->data = null;
        $this->endEntry($done);
        return true;
    }

    private function endEntry(array $done): void
    {
        if ($done['to'] === 'file') {
            $this->closeFile();
            if ($done['exec']) {
                chmod($done['path'], 0700);
            }
        } elseif ($done['to'] === 'meta') {
            if ($done['type'] === 'x') {
                $this->pax = parsePax($done['meta']);
            } elseif ($done['type'] === 'L') {
                $this->longName = rtrim($done['meta'], "\0");
            }
        }
    }

    private function header(string $block): void
    {
        $stored = octal(substr($block, 148, 8));
        $sum = 0;
        for ($i = 0; $i < TAR_BLOCK; $i++) {
            $sum += ($i >= 148 && $i < 156) ? 32 : ord($block[$i]);
        }
        if ($stored === null || $stored !== $sum) {
            throw new Unsafe("archive: not a tar (a header's checksum is wrong)");
        }
        $type = $block[156] === "\0" ? '0' : $block[156];
        $name = cString(substr($block, 0, 100));
        $magic = substr($block, 257, 6);
        if ($magic === "ustar\0") {
            $prefix = cString(substr($block, 345, 155));
            if ($prefix !== '') {
                $name = "$prefix/$name";
            }
        }
        $size = tarSize(substr($block, 124, 12));
        if ($size === null) {
            throw Unsafe::entry($name, 'invalid size');
        }
        $pad = (TAR_BLOCK - $size % TAR_BLOCK) % TAR_BLOCK;

        // Headers that describe the next entry.
        if ($type === 'x' || $type === 'L' || $type === 'K' || $type === 'g') {
            if ($size > MAX_META_BYTES) {
                throw Unsafe::entry($name, 'an extended header over 1 MiB');
            }
            $this->data = ['to' => ($type === 'x' || $type === 'L') ? 'meta' : 'skip', 'type' => $type, 'left' => $size, 'pad' => $pad, 'meta' => ''];
            return;
        }
        if ($this->pax !== null) {
            if (isset($this->pax['path'])) {
                $name = $this->pax['path'];
            }
            if (isset($this->pax['size'])) {
                if (!preg_match('/^[0-9]{1,18}$/', $this->pax['size'])) {
                    throw Unsafe::entry($name, 'invalid size');
                }
                $size = (int) $this->pax['size'];
                $pad = (TAR_BLOCK - $size % TAR_BLOCK) % TAR_BLOCK;
            }
        } elseif ($this->longName !== null) {
            $name = $this->longName;
        }
        $this->pax = null;
        $this->longName = null;

        $this->entries++;
        if ($this->entries > $this->maxEntries) {
            throw Unsafe::entry($name, "more than {$this->maxEntries} entries");
        }
        $path = cleanPath($name, $type === '5');
        $kind = match ($type) {
            '0', '7' => 'file',
            '5' => 'dir',
            '1' => throw Unsafe::entry($name, 'hard links are not allowed'),
            '2' => throw Unsafe::entry($name, 'symbolic links are not allowed'),
            '3', '4' => throw Unsafe::entry($name, 'devices are not allowed'),
            '6' => throw Unsafe::entry($name, 'FIFOs are not allowed'),
            'S' => throw Unsafe::entry($name, 'sparse files are not allowed'),
            default => throw Unsafe::entry($name, 'unknown entry type ' . json_encode($type)),
        };
        if ($path === '') { // "./", the package's root
            if ($kind !== 'dir') {
                throw Unsafe::entry($name, 'not a file name');
            }
            $this->data = ['to' => 'skip', 'type' => $type, 'left' => 0, 'pad' => 0];
            return;
        }
        $this->place($name, $path, $kind);
        $full = "{$this->dir}/$path";
        if ($kind === 'dir') {
            if (!is_dir($full) && !mkdir($full, 0700)) {
                throw new \RuntimeException("cannot create $path");
            }
            // A directory's "data" (there should be none) is skipped.
            $this->data = ['to' => 'skip', 'type' => $type, 'left' => $size, 'pad' => $pad];
            return;
        }
        $this->fileBytes += $size;
        if ($this->fileBytes > $this->maxBytes) {
            throw Unsafe::entry($name, "the package's files are over {$this->maxBytes} bytes");
        }
        $old = umask(0077);
        $file = @fopen($full, 'xb');
        umask($old);
        if ($file === false) {
            throw Unsafe::entry($name, 'cannot be written (it repeats another entry?)');
        }
        $this->file = $file;
        $mode = octal(substr($block, 100, 8)) ?? 0;
        $this->data = ['to' => 'file', 'type' => $type, 'left' => $size, 'pad' => $pad, 'path' => $full, 'exec' => ($mode & 0100) !== 0];
        if ($size === 0) {
            $this->consumeData();
        }
    }

    /** Records the entry; refuses a repeat, or a path through a file. Creates the parent dirs. */
    private function place(string $name, string $path, string $kind): void
    {
        if (isset($this->explicit[$path]) || (isset($this->kinds[$path]) && ($this->kinds[$path] !== 'dir' || $kind !== 'dir'))) {
            throw Unsafe::entry($name, 'repeats another entry');
        }
        $parts = explode('/', $path);
        $prefix = '';
        for ($i = 0, $n = count($parts) - 1; $i < $n; $i++) {
            $prefix = $prefix === '' ? $parts[$i] : "$prefix/{$parts[$i]}";
            if (($this->kinds[$prefix] ?? 'dir') !== 'dir') {
                throw Unsafe::entry($name, 'passes through a file');
            }
            if (!isset($this->kinds[$prefix])) {
                $this->kinds[$prefix] = 'dir';
                $full = "{$this->dir}/$prefix";
                if (!is_dir($full) && !mkdir($full, 0700)) {
                    throw new \RuntimeException("cannot create $prefix");
                }
            }
        }
        $this->kinds[$path] = $kind;
        $this->explicit[$path] = true;
    }

    private function closeFile(): void
    {
        if ($this->file !== null) {
            fclose($this->file);
            $this->file = null;
        }
    }
}

/** A relative, clean path ("" for the root itself); refuses anything else. @throws Unsafe */
function cleanPath(string $name, bool $dir): string
{
    if ($name === '' || str_contains($name, "\0")) {
        throw Unsafe::entry($name, 'not a file name');
    }
    if ($name[0] === '/') {
        throw Unsafe::entry($name, 'absolute paths are not allowed');
    }
    if (str_contains($name, '\\')) {
        throw Unsafe::entry($name, 'backslashes are not allowed');
    }
    $path = $name;
    while (str_starts_with($path, './')) {
        $path = substr($path, 2);
    }
    if ($path === '.' || $path === '') {
        return '';
    }
    if ($dir || str_ends_with($path, '/')) {
        $path = rtrim($path, '/');
    }
    foreach (explode('/', $path) as $part) {
        if ($part === '..') {
            throw Unsafe::entry($name, 'path escapes the archive root');
        }
        if ($part === '' || $part === '.') {
            throw Unsafe::entry($name, 'not a clean path');
        }
    }
    return $path;
}

function cString(string $field): string
{
    $nul = strpos($field, "\0");
    return $nul === false ? $field : substr($field, 0, $nul);
}

function octal(string $field): ?int
{
    $digits = trim(cString($field), " \0");
    if ($digits === '' || !preg_match('/^[0-7]{1,21}$/', $digits)) {
        return $digits === '' ? 0 : null;
    }
    return (int) octdec($digits);
}

/** The size field: octal, or GNU's base-256 for big files. */
function tarSize(string $field): ?int
{
    if ((ord($field[0]) & 0x80) !== 0) {
        $size = 0;
        for ($i = 1; $i < 12; $i++) {
            if ($size > (PHP_INT_MAX >> 8)) {
                return null;
            }
            $size = ($size << 8) | ord($field[$i]);
        }
        return (ord($field[0]) & 0x7f) === 0 ? $size : null;
    }
    return octal($field);
}

/** Pax records: "<length> <key>=<value>\n". @return array<string,string> @throws Unsafe */
function parsePax(string $data): array
{
    $out = [];
    $at = 0;
    $n = strlen($data);
    while ($at < $n) {
        $space = strpos($data, ' ', $at);
        $length = $space === false ? 0 : (int) substr($data, $at, $space - $at);
        if ($space === false || $length <= $space - $at || $at + $length > $n || $data[$at + $length - 1] !== "\n") {
            throw new Unsafe('archive: a malformed pax header');
        }
        $record = substr($data, $space + 1, $length - ($space - $at) - 2);
        $eq = strpos($record, '=');
        if ($eq === false) {
            throw new Unsafe('archive: a malformed pax header');
        }
        $out[substr($record, 0, $eq)] = substr($record, $eq + 1);
        $at += $length;
    }
    return $out;
}
