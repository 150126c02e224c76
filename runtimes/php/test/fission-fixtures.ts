// Functions written for Fission's PHP environment (fission/environments php7, its examples
// hello.php, hellopsr.php, stock.php and multifile's handlers/FileReader.php), in the shapes they
// have there, plus PHP-specific probes (exit(), fatal errors, isolation between calls).
import type { Source } from "../../contract/runtime-contract.js";

/** Fission's hello.php: a script; its output is the answer, $logger is in scope. */
export const FISSION_HELLO: Source = {
  filename: "hello.php",
  source: `<?php\necho "Hello from PHP";\n$logger->warning("Hello logger");\n`,
};

/** Fission's hellopsr.php: handler($context) writes to the PSR-7 response and returns nothing. */
export const FISSION_HELLOPSR: Source = {
  filename: "hellopsr.php",
  source: `<?php
function handler($context){
    /** @var \\Psr\\Http\\Message\\ResponseInterface $response */
    $response = $context["response"];
    /** @var \\Psr\\Http\\Message\\ServerRequestInterface $request */
    $request = $context["request"];
    /** @var \\Psr\\Log\\LoggerInterface $logger */
    $logger = $context["logger"];

    $response->getBody()->write("Hello from handler PHP");
    $logger->warning("Hello logger");
}
`,
};

/** The shape of Fission's stock.php: typed `use` imports, getParsedBody() of a form, and an
 * error answered by returning `$response->withStatus(500)`. */
export const FISSION_STOCK: Source = {
  filename: "stock.php",
  source: `<?php
use \\Psr\\Http\\Message\\ResponseInterface;
use \\Psr\\Http\\Message\\ServerRequestInterface;
use \\Psr\\Log\\LoggerInterface;

function sendError($response,$message){
    $response = $response->withStatus(500);
    $response->getBody()->write($message);
    return $response;
}

function handler($context){
    /** @var ResponseInterface $response */
    $response = $context["response"];
    /** @var ServerRequestInterface $request */
    $request = $context["request"];
    /** @var LoggerInterface $logger */
    $logger = $context["logger"];

    if($request->getMethod() != "POST")
        return sendError($response,"You must use POST method");
    $logger->debug("Request : ",$request->getParsedBody());
    $body = $request->getParsedBody();
    if(!isset($body["currency"]))
        return sendError($response,"'currency' is not present in the POST request");
    $response->getBody()->write(json_encode(array("text"=>sprintf("%s-USD = %02f",$body["currency"],42))));
}
`,
};

/** Typed PSR-7 code: parameters and return types name the interfaces. */
export const TYPED_PSR: Source = {
  filename: "typed.php",
  source: `<?php
declare(strict_types=1);

use Psr\\Http\\Message\\ResponseInterface;
use Psr\\Http\\Message\\ServerRequestInterface;
use Psr\\Log\\LoggerInterface;

function describe(ServerRequestInterface $request): array
{
    return [
        'method' => $request->getMethod(),
        'path' => $request->getUri()->getPath(),
        'uriQuery' => $request->getUri()->getQuery(),
        'host' => $request->getUri()->getHost(),
        'scheme' => $request->getUri()->getScheme(),
        'query' => $request->getQueryParams(),
        'header' => $request->getHeaderLine('X-Custom'),
        'headerLower' => $request->getHeader('x-custom'),
        'hasMissing' => $request->hasHeader('X-Missing'),
        'body' => (string) $request->getBody(),
        'form' => $request->getParsedBody(),
        'target' => $request->getRequestTarget(),
        'cookies' => $request->getCookieParams(),
        'remote' => $request->getServerParams()['REMOTE_ADDR'],
        'attribute' => $request->getAttribute('id', 'none'),
    ];
}

function handler(array $context): ResponseInterface
{
    $logger = $context['logger'];
    assert($logger instanceof LoggerInterface);
    $logger->info('typed call', ['path' => $context['request']->getUri()->getPath()]);
    $response = $context['response'];
    $response->getBody()->write(json_encode(describe($context['request'])));
    return $response
        ->withStatus(203, 'Fine')
        ->withHeader('Content-Type', 'application/json')
        ->withAddedHeader('X-Multi', 'a')
        ->withAddedHeader('X-Multi', 'b');
}
`,
};

/** PHP's exit() and fatal errors, chosen by the query's `kind`, and per-call state. */
export const PROBES: Source = {
  filename: "probes.php",
  source: `<?php
function handler($context)
{
    global $calls;
    $calls = ($calls ?? 0) + 1;
    static $statics = 0;
    $statics++;
    $q = $context['request']->getQueryParams();
    switch ($q['kind'] ?? '') {
        case 'exit':
            $context['response']->getBody()->write('written before exit');
            exit(3);
        case 'die':
            die('died');
        case 'memory':
            ini_set('memory_limit', '16M');
            $s = str_repeat('x', 64 * 1024 * 1024);
            return 'unreachable';
        case 'undefined':
            return undefined_function_here();
        case 'type':
            return strlen([]);
        case 'trigger':
            trigger_error('a user error', E_USER_ERROR);
            return 'unreachable';
        case 'segv':
            posix_kill(posix_getpid(), SIGKILL);
            return 'unreachable';
        case 'state':
            return ['calls' => $calls, 'statics' => $statics];
        case 'warn':
            $a = [];
            return 'after a warning ' . @$a['missing'] . ($a['missing2'] ?? 'default');
        case 'invalid-json':
            return $context['request']->getParsedBody();
        case 'catches-json':
            try {
                return $context['request']->getParsedBody();
            } catch (\\RuntimeException $e) {
                return 'caught';
            }
        case 'int':
            return 42;
        case 'sleep':
            usleep((int) $q['ms'] * 1000);
            return 'slept';
        case 'env':
            return [
                'getenv' => getenv('FIZZ_SPECIALIZE_TOKEN'),
                'server' => $_SERVER['FIZZ_SPECIALIZE_TOKEN'] ?? null,
                'env' => $_ENV['FIZZ_SPECIALIZE_TOKEN'] ?? null,
                'all' => array_key_exists('FIZZ_SPECIALIZE_TOKEN', getenv()),
                'child' => str_contains((string) shell_exec('env'), 'FIZZ_SPECIALIZE_TOKEN'),
            ];
    }
    return 'probes';
}
`,
};

/** A script that echoes its id five times, 20 ms apart: output buffers of concurrent calls. */
export const PRINTER: Source = {
  filename: "printer.php",
  source: `<?php
$id = $_GET['id'];
for ($i = 0; $i < 5; $i++) {
    echo "$id $i\\n";
    usleep(20000);
}
if (($_GET['then'] ?? '') === 'exit') {
    echo "exiting\\n";
    exit(0);
}
if (($_GET['then'] ?? '') === 'fatal') {
    function strlen() {}
}
http_response_code((int) ($_GET['status'] ?? 200));
`,
};

/** A package that ships psr/http-message 2.0 and psr/log 3.0 (typed interfaces) behind a
 * Composer-style autoloader: the runtime's classes must implement those, not its own. */
export const PSR2_PACKAGE: Record<string, string> = {
  "vendor/autoload.php": `<?php
spl_autoload_register(function ($class) {
    $file = __DIR__ . '/psr/' . str_replace('\\\\', '/', $class) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
`,
  "vendor/psr/Psr/Http/Message/MessageInterface.php": `<?php
namespace Psr\\Http\\Message;
interface MessageInterface
{
    public function getProtocolVersion(): string;
    public function withProtocolVersion(string $version): MessageInterface;
    public function getHeaders(): array;
    public function hasHeader(string $name): bool;
    public function getHeader(string $name): array;
    public function getHeaderLine(string $name): string;
    public function withHeader(string $name, $value): MessageInterface;
    public function withAddedHeader(string $name, $value): MessageInterface;
    public function withoutHeader(string $name): MessageInterface;
    public function getBody(): StreamInterface;
    public function withBody(StreamInterface $body): MessageInterface;
}
`,
  "vendor/psr/Psr/Http/Message/RequestInterface.php": `<?php
namespace Psr\\Http\\Message;
interface RequestInterface extends MessageInterface
{
    public function getRequestTarget(): string;
    public function withRequestTarget(string $requestTarget): RequestInterface;
    public function getMethod(): string;
    public function withMethod(string $method): RequestInterface;
    public function getUri(): UriInterface;
    public function withUri(UriInterface $uri, bool $preserveHost = false): RequestInterface;
}
`,
  "vendor/psr/Psr/Http/Message/ServerRequestInterface.php": `<?php
namespace Psr\\Http\\Message;
interface ServerRequestInterface extends RequestInterface
{
    public function getServerParams(): array;
    public function getCookieParams(): array;
    public function withCookieParams(array $cookies): ServerRequestInterface;
    public function getQueryParams(): array;
    public function withQueryParams(array $query): ServerRequestInterface;
    public function getUploadedFiles(): array;
    public function withUploadedFiles(array $uploadedFiles): ServerRequestInterface;
    public function getParsedBody();
    public function withParsedBody($data): ServerRequestInterface;
    public function getAttributes(): array;
    public function getAttribute(string $name, $default = null);
    public function withAttribute(string $name, $value): ServerRequestInterface;
    public function withoutAttribute(string $name): ServerRequestInterface;
}
`,
  "vendor/psr/Psr/Http/Message/ResponseInterface.php": `<?php
namespace Psr\\Http\\Message;
interface ResponseInterface extends MessageInterface
{
    public function getStatusCode(): int;
    public function withStatus(int $code, string $reasonPhrase = ''): ResponseInterface;
    public function getReasonPhrase(): string;
}
`,
  "vendor/psr/Psr/Http/Message/StreamInterface.php": `<?php
namespace Psr\\Http\\Message;
interface StreamInterface
{
    public function __toString(): string;
    public function close(): void;
    public function detach();
    public function getSize(): ?int;
    public function tell(): int;
    public function eof(): bool;
    public function isSeekable(): bool;
    public function seek(int $offset, int $whence = SEEK_SET): void;
    public function rewind(): void;
    public function isWritable(): bool;
    public function write(string $string): int;
    public function isReadable(): bool;
    public function read(int $length): string;
    public function getContents(): string;
    public function getMetadata(?string $key = null);
}
`,
  "vendor/psr/Psr/Http/Message/UriInterface.php": `<?php
namespace Psr\\Http\\Message;
interface UriInterface
{
    public function getScheme(): string;
    public function getAuthority(): string;
    public function getUserInfo(): string;
    public function getHost(): string;
    public function getPort(): ?int;
    public function getPath(): string;
    public function getQuery(): string;
    public function getFragment(): string;
    public function withScheme(string $scheme): UriInterface;
    public function withUserInfo(string $user, ?string $password = null): UriInterface;
    public function withHost(string $host): UriInterface;
    public function withPort(?int $port): UriInterface;
    public function withPath(string $path): UriInterface;
    public function withQuery(string $query): UriInterface;
    public function withFragment(string $fragment): UriInterface;
    public function __toString(): string;
}
`,
  "vendor/psr/Psr/Log/LoggerInterface.php": `<?php
namespace Psr\\Log;
interface LoggerInterface
{
    public function emergency(string|\\Stringable $message, array $context = []): void;
    public function alert(string|\\Stringable $message, array $context = []): void;
    public function critical(string|\\Stringable $message, array $context = []): void;
    public function error(string|\\Stringable $message, array $context = []): void;
    public function warning(string|\\Stringable $message, array $context = []): void;
    public function notice(string|\\Stringable $message, array $context = []): void;
    public function info(string|\\Stringable $message, array $context = []): void;
    public function debug(string|\\Stringable $message, array $context = []): void;
    public function log($level, string|\\Stringable $message, array $context = []): void;
}
`,
  "handlers/Typed.php": `<?php
require __DIR__ . '/../vendor/autoload.php';

use Psr\\Http\\Message\\ResponseInterface;
use Psr\\Log\\LoggerInterface;

function execute(array $context): ResponseInterface
{
    $from = fn (string $class) => str_contains((string) (new ReflectionClass($class))->getFileName(), '/vendor/') ? 'vendor' : 'runtime';
    $context['logger']->info('typed');
    $response = $context['response'];
    $response->getBody()->write(implode(' ', [
        $from(ResponseInterface::class),
        $from(LoggerInterface::class),
        $context['logger'] instanceof LoggerInterface ? 'logger' : 'no-logger',
        $context['request']->withAttribute('a', 1)->getUri()->withPort(8080)->getPort(),
    ]));
    return $response->withStatus(201);
}
`,
};
