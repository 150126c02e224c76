<?php
// Minimal PSR-7 messages for Fission's handler form (`function handler($context)`): the request a
// function reads and the response it writes to (or returns). Immutable as PSR-7 says: with*()
// returns a changed copy that shares the body stream, as Fission's (ReactPHP's) messages do.
// Parameters are untyped and return types are those of psr/http-message 2.0, so these classes
// satisfy both the 1.0 and the 2.0 interfaces, whichever the function's own Composer packages load.
declare(strict_types=1);

namespace Fizz\Context;

use Psr\Http\Message\MessageInterface;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Message\StreamInterface;
use Psr\Http\Message\UriInterface;

/** A JSON request body that is not JSON, read through getParsedBody(): 400 INVALID_BODY if uncaught. */
final class InvalidBody extends \RuntimeException
{
}

final class Stream implements StreamInterface
{
    /** @var resource|null */
    private $resource;

    public function __construct(string $content = '')
    {
        $this->resource = fopen('php://temp', 'r+b');
        if ($content !== '') {
            fwrite($this->resource, $content);
            rewind($this->resource);
        }
    }

    public function __toString(): string
    {
        if ($this->resource === null) {
            return '';
        }
        rewind($this->resource);
        return (string) stream_get_contents($this->resource);
    }

    public function close(): void
    {
        if ($this->resource !== null) {
            fclose($this->resource);
            $this->resource = null;
        }
    }

    public function detach()
    {
        $resource = $this->resource;
        $this->resource = null;
        return $resource;
    }

    public function getSize(): ?int
    {
        return $this->resource === null ? null : fstat($this->resource)['size'];
    }

    public function tell(): int
    {
        return (int) ftell($this->live());
    }

    public function eof(): bool
    {
        return $this->resource === null || feof($this->resource);
    }

    public function isSeekable(): bool
    {
        return $this->resource !== null;
    }

    public function seek($offset, $whence = SEEK_SET): void
    {
        if (fseek($this->live(), (int) $offset, (int) $whence) !== 0) {
            throw new \RuntimeException('cannot seek to ' . $offset);
        }
    }

    public function rewind(): void
    {
        $this->seek(0);
    }

    public function isWritable(): bool
    {
        return $this->resource !== null;
    }

    public function write($string): int
    {
        return (int) fwrite($this->live(), (string) $string);
    }

    public function isReadable(): bool
    {
        return $this->resource !== null;
    }

    public function read($length): string
    {
        return (string) fread($this->live(), max(1, (int) $length));
    }

    public function getContents(): string
    {
        return (string) stream_get_contents($this->live());
    }

    public function getMetadata($key = null)
    {
        $meta = $this->resource === null ? [] : stream_get_meta_data($this->resource);
        return $key === null ? $meta : ($meta[$key] ?? null);
    }

    /** @return resource */
    private function live()
    {
        if ($this->resource === null) {
            throw new \RuntimeException('the stream is closed or detached');
        }
        return $this->resource;
    }
}

final class Uri implements UriInterface
{
    public function __construct(
        private string $scheme = '',
        private string $userInfo = '',
        private string $host = '',
        private ?int $port = null,
        private string $path = '',
        private string $query = '',
        private string $fragment = '',
    ) {
    }

    public function getScheme(): string
    {
        return $this->scheme;
    }

    public function getAuthority(): string
    {
        if ($this->host === '') {
            return '';
        }
        $authority = ($this->userInfo === '' ? '' : $this->userInfo . '@') . $this->host;
        $default = ['http' => 80, 'https' => 443][$this->scheme] ?? null;
        return $this->port === null || $this->port === $default ? $authority : "$authority:{$this->port}";
    }

    public function getUserInfo(): string
    {
        return $this->userInfo;
    }

    public function getHost(): string
    {
        return $this->host;
    }

    public function getPort(): ?int
    {
        $default = ['http' => 80, 'https' => 443][$this->scheme] ?? null;
        return $this->port === $default ? null : $this->port;
    }

    public function getPath(): string
    {
        return $this->path;
    }

    public function getQuery(): string
    {
        return $this->query;
    }

    public function getFragment(): string
    {
        return $this->fragment;
    }

    public function withScheme($scheme): static
    {
        return $this->with('scheme', strtolower((string) $scheme));
    }

    public function withUserInfo($user, $password = null): static
    {
        $info = (string) $user;
        if ($info !== '' && $password !== null && $password !== '') {
            $info .= ':' . $password;
        }
        return $this->with('userInfo', $info);
    }

    public function withHost($host): static
    {
        return $this->with('host', strtolower((string) $host));
    }

    public function withPort($port): static
    {
        if ($port !== null && ((int) $port < 0 || (int) $port > 65535)) {
            throw new \InvalidArgumentException("invalid port $port");
        }
        return $this->with('port', $port === null ? null : (int) $port);
    }

    public function withPath($path): static
    {
        return $this->with('path', (string) $path);
    }

    public function withQuery($query): static
    {
        return $this->with('query', ltrim((string) $query, '?'));
    }

    public function withFragment($fragment): static
    {
        return $this->with('fragment', ltrim((string) $fragment, '#'));
    }

    public function __toString(): string
    {
        $uri = $this->scheme === '' ? '' : $this->scheme . ':';
        $authority = $this->getAuthority();
        if ($authority !== '') {
            $uri .= '//' . $authority;
        }
        $path = $this->path;
        if ($authority !== '' && $path !== '' && $path[0] !== '/') {
            $path = '/' . $path;
        }
        $uri .= $path;
        if ($this->query !== '') {
            $uri .= '?' . $this->query;
        }
        return $this->fragment === '' ? $uri : $uri . '#' . $this->fragment;
    }

    private function with(string $field, mixed $value): static
    {
        $copy = clone $this;
        $copy->$field = $value;
        return $copy;
    }
}

trait Message
{
    /** @var array<string, array{string, list<string>}> lower-case name => [name as given, values] */
    private array $headerMap = [];
    private string $protocol = '1.1';
    private StreamInterface $body;

    public function getProtocolVersion(): string
    {
        return $this->protocol;
    }

    public function withProtocolVersion($version): static
    {
        $copy = clone $this;
        $copy->protocol = (string) $version;
        return $copy;
    }

    public function getHeaders(): array
    {
        $headers = [];
        foreach ($this->headerMap as [$name, $values]) {
            $headers[$name] = $values;
        }
        return $headers;
    }

    public function hasHeader($name): bool
    {
        return isset($this->headerMap[strtolower((string) $name)]);
    }

    public function getHeader($name): array
    {
        return $this->headerMap[strtolower((string) $name)][1] ?? [];
    }

    public function getHeaderLine($name): string
    {
        return implode(',', $this->getHeader($name));
    }

    public function withHeader($name, $value): static
    {
        $copy = clone $this;
        $copy->headerMap[strtolower(self::headerName($name))] = [(string) $name, self::headerValues($value)];
        return $copy;
    }

    public function withAddedHeader($name, $value): static
    {
        $lower = strtolower(self::headerName($name));
        $copy = clone $this;
        $existing = $copy->headerMap[$lower] ?? [(string) $name, []];
        $copy->headerMap[$lower] = [$existing[0], array_merge($existing[1], self::headerValues($value))];
        return $copy;
    }

    public function withoutHeader($name): static
    {
        $copy = clone $this;
        unset($copy->headerMap[strtolower((string) $name)]);
        return $copy;
    }

    public function getBody(): StreamInterface
    {
        return $this->body;
    }

    public function withBody(StreamInterface $body): static
    {
        $copy = clone $this;
        $copy->body = $body;
        return $copy;
    }

    private static function headerName(mixed $name): string
    {
        if (!is_string($name) || !preg_match('/^[A-Za-z0-9!#$%&\'*+.^_`|~-]+$/', $name)) {
            throw new \InvalidArgumentException('invalid header name');
        }
        return $name;
    }

    /** @return list<string> */
    private static function headerValues(mixed $value): array
    {
        $values = is_array($value) ? array_values($value) : [$value];
        if ($values === []) {
            throw new \InvalidArgumentException('a header needs a value');
        }
        $out = [];
        foreach ($values as $v) {
            if (!is_scalar($v) && !$v instanceof \Stringable) {
                throw new \InvalidArgumentException('invalid header value');
            }
            $v = trim((string) $v, " \t");
            if (strpbrk($v, "\r\n\0") !== false) {
                throw new \InvalidArgumentException('a header value cannot hold CR, LF or NUL');
            }
            $out[] = $v;
        }
        return $out;
    }
}

final class ServerRequest implements ServerRequestInterface
{
    use Message;

    private array $attributes;
    private mixed $parsedBody = null;
    private bool $parsed = false;
    private ?array $cookies = null;
    private ?string $requestTarget = null;

    /** @param list<array{string,string}> $headers */
    public function __construct(
        private string $method,
        private UriInterface $uri,
        array $headers,
        string $body,
        private array $serverParams,
        private array $queryParams,
        array $attributes,
    ) {
        foreach ($headers as [$name, $value]) {
            $lower = strtolower($name);
            if (isset($this->headerMap[$lower])) {
                $this->headerMap[$lower][1][] = $value;
            } else {
                $this->headerMap[$lower] = [$name, [$value]];
            }
        }
        $this->body = new Stream($body);
        $this->attributes = $attributes;
    }

    public function getRequestTarget(): string
    {
        if ($this->requestTarget !== null) {
            return $this->requestTarget;
        }
        $target = $this->uri->getPath() === '' ? '/' : $this->uri->getPath();
        $query = $this->uri->getQuery();
        return $query === '' ? $target : "$target?$query";
    }

    public function withRequestTarget($requestTarget): static
    {
        $copy = clone $this;
        $copy->requestTarget = (string) $requestTarget;
        return $copy;
    }

    public function getMethod(): string
    {
        return $this->method;
    }

    public function withMethod($method): static
    {
        $copy = clone $this;
        $copy->method = (string) $method;
        return $copy;
    }

    public function getUri(): UriInterface
    {
        return $this->uri;
    }

    public function withUri(UriInterface $uri, $preserveHost = false): static
    {
        $copy = clone $this;
        $copy->uri = $uri;
        if ($uri->getHost() !== '' && (!$preserveHost || !$this->hasHeader('host'))) {
            $port = $uri->getPort();
            $copy->headerMap['host'] = ['Host', [$uri->getHost() . ($port === null ? '' : ":$port")]];
        }
        return $copy;
    }

    public function getServerParams(): array
    {
        return $this->serverParams;
    }

    public function getCookieParams(): array
    {
        if ($this->cookies === null) {
            $this->cookies = [];
            foreach (explode(';', $this->getHeaderLine('cookie')) as $pair) {
                $parts = explode('=', trim($pair), 2);
                if (count($parts) === 2 && $parts[0] !== '' && !isset($this->cookies[$parts[0]])) {
                    $this->cookies[$parts[0]] = urldecode($parts[1]);
                }
            }
        }
        return $this->cookies;
    }

    public function withCookieParams(array $cookies): static
    {
        $copy = clone $this;
        $copy->cookies = $cookies;
        return $copy;
    }

    public function getQueryParams(): array
    {
        return $this->queryParams;
    }

    public function withQueryParams(array $query): static
    {
        $copy = clone $this;
        $copy->queryParams = $query;
        return $copy;
    }

    public function getUploadedFiles(): array
    {
        return [];
    }

    public function withUploadedFiles(array $uploadedFiles): static
    {
        return clone $this;
    }

    /**
     * A urlencoded form as PHP's $_POST (parse_str), JSON as arrays; null for anything else, as
     * ReactPHP's body parser leaves it. JSON that is not JSON throws InvalidBody.
     */
    public function getParsedBody()
    {
        if (!$this->parsed) {
            $this->parsed = true;
            $type = strtolower(trim(explode(';', $this->getHeaderLine('content-type'))[0]));
            $raw = (string) $this->body;
            if ($type === 'application/x-www-form-urlencoded') {
                parse_str($raw, $form);
                $this->parsedBody = $form;
            } elseif ($type === 'application/json' || str_ends_with($type, '+json')) {
                try {
                    $this->parsedBody = $raw === '' ? null : json_decode($raw, true, 512, JSON_THROW_ON_ERROR);
                } catch (\JsonException $e) {
                    throw new InvalidBody('the request body is not JSON: ' . $e->getMessage());
                }
            }
        }
        return $this->parsedBody;
    }

    public function withParsedBody($data): static
    {
        $copy = clone $this;
        $copy->parsed = true;
        $copy->parsedBody = $data;
        return $copy;
    }

    public function getAttributes(): array
    {
        return $this->attributes;
    }

    public function getAttribute($name, $default = null)
    {
        return array_key_exists((string) $name, $this->attributes) ? $this->attributes[(string) $name] : $default;
    }

    public function withAttribute($name, $value): static
    {
        $copy = clone $this;
        $copy->attributes[(string) $name] = $value;
        return $copy;
    }

    public function withoutAttribute($name): static
    {
        $copy = clone $this;
        unset($copy->attributes[(string) $name]);
        return $copy;
    }
}

final class Response implements ResponseInterface
{
    use Message;

    private string $reason = '';

    public function __construct(private int $status = 200, array $headers = [], string $body = '')
    {
        foreach ($headers as $name => $value) {
            $this->headerMap[strtolower($name)] = [$name, self::headerValues($value)];
        }
        $this->body = new Stream($body);
    }

    public function getStatusCode(): int
    {
        return $this->status;
    }

    public function withStatus($code, $reasonPhrase = ''): static
    {
        if (!is_int($code) && !(is_string($code) && ctype_digit($code))) {
            throw new \InvalidArgumentException('a status code is an integer');
        }
        if ((int) $code < 100 || (int) $code > 599) {
            throw new \InvalidArgumentException("invalid status code $code");
        }
        $copy = clone $this;
        $copy->status = (int) $code;
        $copy->reason = (string) $reasonPhrase;
        return $copy;
    }

    public function getReasonPhrase(): string
    {
        return $this->reason !== '' ? $this->reason : (\Fizz\REASONS[$this->status] ?? '');
    }
}

/** Whether $value is a PSR-7 message this runtime can answer with (ours or a Composer package's). */
function isMessage(mixed $value): bool
{
    return $value instanceof MessageInterface;
}
