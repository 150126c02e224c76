<?php
// HTTP/1.1 for the runtime's own server: request heads, bodies (Content-Length and chunked, fed
// incrementally so a slow client never blocks the loop), and answers. Only what the platform and
// its clients speak; nothing here runs user code.
declare(strict_types=1);

namespace Fizz;

/** An answer the runtime gives instead of the function's: status, code, message. */
final class HttpError extends \Exception
{
    public function __construct(
        public readonly int $status,
        public readonly string $errorCode,
        string $message,
        public readonly ?string $field = null,
        public readonly bool $retryable = false,
        public readonly bool $close = false,
    ) {
        parent::__construct($message);
    }

    public function payload(): array
    {
        return errorPayload($this->errorCode, $this->getMessage(), $this->field, $this->retryable);
    }
}

function errorPayload(string $code, string $message, ?string $field = null, bool $retryable = false): array
{
    $error = ['code' => $code, 'message' => $message, 'retryable' => $retryable];
    if ($field !== null) {
        $error['field'] = $field;
    }
    return ['error' => $error];
}

function jsonEncode(mixed $value): string
{
    return json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE
        | JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR);
}

const MAX_HEAD_BYTES = 64 * 1024;
const MAX_HEADERS = 100;

/** A parsed request line and headers; header names lower-cased, repeated ones joined by ", ". */
final class RequestHead
{
    /** @param array<string,string> $headers @param list<array{string,string}> $raw */
    public function __construct(
        public readonly string $method,
        public readonly string $target,
        public readonly string $version,
        public readonly array $headers,
        public readonly array $raw,
    ) {
    }

    public function header(string $name): ?string
    {
        return $this->headers[$name] ?? null;
    }

    public function path(): string
    {
        $q = strpos($this->target, '?');
        return $q === false ? $this->target : substr($this->target, 0, $q);
    }

    public function query(): string
    {
        $q = strpos($this->target, '?');
        return $q === false ? '' : substr($this->target, $q + 1);
    }

    /** Whether the client wants the connection kept after this request. */
    public function keepAlive(): bool
    {
        $connection = strtolower($this->headers['connection'] ?? '');
        if ($this->version === 'HTTP/1.0') {
            return str_contains($connection, 'keep-alive');
        }
        return !str_contains($connection, 'close');
    }

    /**
     * Takes a head off the front of $buffer; null while it is incomplete.
     * @throws HttpError 400 or 431 (the connection closes after it)
     */
    public static function take(string &$buffer): ?self
    {
        // Empty lines before a request are allowed (RFC 9112 2.2).
        $buffer = ltrim($buffer, "\r\n");
        $end = strpos($buffer, "\r\n\r\n");
        if ($end === false) {
            if (strlen($buffer) > MAX_HEAD_BYTES) {
                throw new HttpError(431, 'HEADERS_TOO_LARGE', 'request headers over 64 KiB', close: true);
            }
            return null;
        }
        if ($end > MAX_HEAD_BYTES) {
            throw new HttpError(431, 'HEADERS_TOO_LARGE', 'request headers over 64 KiB', close: true);
        }
        $lines = explode("\r\n", substr($buffer, 0, $end));
        $buffer = substr($buffer, $end + 4);
        if (!preg_match('#^([A-Z][A-Z0-9!\#$%&\'*+.^_`|~-]*) (\S+) (HTTP/1\.[01])$#', $lines[0], $m)) {
            throw new HttpError(400, 'BAD_REQUEST', 'malformed request line', close: true);
        }
        if (count($lines) - 1 > MAX_HEADERS) {
            throw new HttpError(431, 'HEADERS_TOO_LARGE', 'more than 100 request headers', close: true);
        }
        $headers = [];
        $raw = [];
        for ($i = 1, $n = count($lines); $i < $n; $i++) {
            $colon = strpos($lines[$i], ':');
            $name = $colon === false ? '' : substr($lines[$i], 0, $colon);
            if ($name === '' || !preg_match('/^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$/', $name)) {
                throw new HttpError(400, 'BAD_REQUEST', 'malformed header line', close: true);
            }
            $value = trim(substr($lines[$i], $colon + 1), " \t");
            $raw[] = [$name, $value];
            $lower = strtolower($name);
            $headers[$lower] = isset($headers[$lower]) ? $headers[$lower] . ', ' . $value : $value;
        }
        return new self($m[1], $m[2], $m[3], $headers, $raw);
    }
}

/**
 * The body's framing, undone incrementally: push() the bytes read from the socket, get the body
 * bytes they carry. Bytes past the end of the body stay in $rest (the next request's).
 */
final class BodyDecoder
{
    private bool $chunked;
    private int $left = 0; // of the Content-Length, or of the current chunk's data
    private string $stage = 'size'; // chunked: size | data | data-end | trailer
    private string $pending = '';
    public bool $done = false;
    public int $total = 0;
    public string $rest = '';

    /** @throws HttpError 400 (bad framing), 413 (a Content-Length over $limit) */
    public function __construct(RequestHead $head, private readonly int $limit)
    {
        $te = $head->header('transfer-encoding');
        $cl = $head->header('content-length');
        $this->chunked = $te !== null;
        if ($te !== null) {
            if (strtolower($te) !== 'chunked' || $cl !== null) {
                throw new HttpError(400, 'BAD_REQUEST', 'unsupported Transfer-Encoding', close: true);
            }
            return;
        }
        if ($cl === null) {
            $this->done = true;
            return;
        }
        if (!preg_match('/^[0-9]{1,18}$/', $cl)) {
            throw new HttpError(400, 'BAD_REQUEST', 'invalid Content-Length', close: true);
        }
        $this->left = (int) $cl;
        if ($this->left > $limit) {
            throw tooLarge($limit);
        }
        $this->done = $this->left === 0;
    }

    /** @throws HttpError */
    public function push(string $data): string
    {
        if ($this->done) {
            $this->rest .= $data;
            return '';
        }
        if (!$this->chunked) {
            $body = substr($data, 0, $this->left);
            $this->left -= strlen($body);
            $this->total += strlen($body);
            if ($this->left === 0) {
                $this->done = true;
                $this->rest .= substr($data, strlen($body));
            }
            return $body;
        }
        $data = $this->pending . $data;
        $this->pending = '';
        $out = '';
        $at = 0;
        $len = strlen($data);
        while ($at < $len && !$this->done) {
            if ($this->stage === 'data') {
                $piece = substr($data, $at, $this->left);
                $out .= $piece;
                $at += strlen($piece);
                $this->left -= strlen($piece);
                if ($this->left === 0) {
                    $this->stage = 'data-end';
                }
                continue;
            }
            $eol = strpos($data, "\r\n", $at);
            if ($eol === false) {
                if ($len - $at > 4096) {
                    throw new HttpError(400, 'BAD_REQUEST', 'malformed chunked body', close: true);
                }
                $this->pending = substr($data, $at);
                break;
            }
            $line = substr($data, $at, $eol - $at);
            $at = $eol + 2;
            if ($this->stage === 'data-end') {
                if ($line !== '') {
                    throw new HttpError(400, 'BAD_REQUEST', 'malformed chunked body', close: true);
                }
                $this->stage = 'size';
            } elseif ($this->stage === 'size') {
                $size = explode(';', $line, 2)[0];
                if (!preg_match('/^[0-9A-Fa-f]{1,15}$/', trim($size))) {
                    throw new HttpError(400, 'BAD_REQUEST', 'malformed chunk size', close: true);
                }
                $this->left = (int) hexdec(trim($size));
                if ($this->total + $this->left > $this->limit) {
                    throw tooLarge($this->limit);
                }
                $this->total += $this->left;
                $this->stage = $this->left === 0 ? 'trailer' : 'data';
            } elseif ($line === '') { // the end of the trailers
                $this->done = true;
            }
        }
        if ($this->done) {
            $this->rest .= substr($data, $at);
        }
        return $out;
    }
}

function tooLarge(int $limit): HttpError
{
    return new HttpError(413, 'PAYLOAD_TOO_LARGE', "request body over $limit bytes", close: true);
}

const REASONS = [
    100 => 'Continue', 200 => 'OK', 201 => 'Created', 202 => 'Accepted', 204 => 'No Content',
    301 => 'Moved Permanently', 302 => 'Found', 303 => 'See Other', 304 => 'Not Modified',
    307 => 'Temporary Redirect', 308 => 'Permanent Redirect', 400 => 'Bad Request',
    401 => 'Unauthorized', 403 => 'Forbidden', 404 => 'Not Found', 405 => 'Method Not Allowed',
    409 => 'Conflict', 413 => 'Content Too Large', 421 => 'Misdirected Request',
    422 => 'Unprocessable Content', 429 => 'Too Many Requests', 431 => 'Request Header Fields Too Large',
    500 => 'Internal Server Error', 501 => 'Not Implemented', 502 => 'Bad Gateway',
    503 => 'Service Unavailable', 504 => 'Gateway Timeout',
];

/**
 * The bytes of an answer. $headers: list of [name, value]; Content-Length and Connection are the
 * server's own (any the function set are replaced), and 1xx/204/304 carry no body.
 * @param list<array{string,string}> $headers
 */
function serializeResponse(int $status, array $headers, string $body, bool $close, bool $head = false): string
{
    $out = "HTTP/1.1 $status " . (REASONS[$status] ?? 'Status') . "\r\n";
    foreach ($headers as [$name, $value]) {
        $lower = strtolower($name);
        if ($lower === 'content-length' || $lower === 'connection' || $lower === 'transfer-encoding') {
            continue;
        }
        // A CR or LF in a name or value would split the answer; drop such headers.
        if (strpbrk($name . $value, "\r\n\0") !== false) {
            continue;
        }
        $out .= "$name: $value\r\n";
    }
    $noBody = $status === 204 || $status === 304 || $status < 200;
    if (!$noBody) {
        $out .= 'Content-Length: ' . strlen($body) . "\r\n";
    }
    $out .= $close ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
    return $out . "\r\n" . ($noBody || $head ? '' : $body);
}

/** @return array{int, list<array{string,string}>, string} */
function jsonAnswer(int $status, mixed $value, array $extra = []): array
{
    return [$status, array_merge([['Content-Type', 'application/json']], $extra), jsonEncode($value)];
}

/** @return array{int, list<array{string,string}>, string} */
function errorAnswer(HttpError $e): array
{
    $extra = $e->status === 429 ? [['Retry-After', '1']] : [];
    return jsonAnswer($e->status, $e->payload(), $extra);
}
