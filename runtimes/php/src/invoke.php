<?php
// One call, in the forked process that runs it (see loop.php): the PSR-7 request and response,
// the user's code, and its answer sent back to the server process as [status, headers, body].
// The fork is the call's whole world: its output buffers, globals and statics, an exit() or a
// fatal error end with it and never reach the server or another call.
declare(strict_types=1);

namespace Fizz;

use Fizz\Context\InvalidBody;
use Fizz\Context\Logger;
use Fizz\Context\Response;
use Fizz\Context\ServerRequest;
use Fizz\Context\Uri;
use Psr\Http\Message\ResponseInterface;

const FATAL_ERRORS = E_ERROR | E_PARSE | E_CORE_ERROR | E_COMPILE_ERROR | E_USER_ERROR | E_RECOVERABLE_ERROR;

/** The request as the server process read it, handed to the fork that runs it. */
final class CallRequest
{
    public function __construct(
        public readonly RequestHead $head,
        public readonly string $body,
        public readonly string $peer,
        public readonly bool $close,
        public readonly bool $headOnly,
    ) {
    }
}

/** The most of an answer written to the client at once. */
const PIECE = 1 << 20;

final class Call
{
    public bool $answered = false;
    public ?ResponseInterface $response = null;
    public int $outputLevel = -1;

    /** @param resource $pair to the server process @param resource $client the caller's connection */
    public function __construct(
        public readonly Entry $entry,
        private readonly CallRequest $request,
        private $pair,
        private $client,
    ) {
    }

    /**
     * Writes the answer to the client, once, and tells the server process: W before writing (a
     * death from here on leaves the connection unusable), F right before the write that takes the
     * answer's last byte (the slot is free from then: the client, holding the answer, may send
     * the next call on another connection at once, and the server must not count this one still
     * in flight; it may be descheduled between its last write and D), D after.
     * @param array{int, list<array{string,string}>, string} $answer
     */
    public function send(array $answer): void
    {
        if ($this->answered) {
            return;
        }
        $this->answered = true;
        [$status, $headers, $body] = $answer;
        $bytes = serializeResponse($status, $headers, $body, $this->request->close, $this->request->headOnly);
        $n = strlen($bytes);
        $free = $n <= PIECE;
        @fwrite($this->pair, $free ? 'WF' : 'W');
        // The socket is the server's, non-blocking: partial writes wait for room.
        for ($at = 0; $at < $n;) {
            if (!$free && $at + PIECE >= $n) {
                @fwrite($this->pair, 'F');
                $free = true;
            }
            $written = @fwrite($this->client, substr($bytes, $at, PIECE));
            if ($written === false) {
                break; // the client is gone
            }
            $at += $written;
            if ($written === 0) {
                $read = $except = null;
                $write = [$this->client];
                if (@stream_select($read, $write, $except, 60) !== 1) {
                    break;
                }
            }
        }
        @fwrite($this->pair, 'D');
    }

    /** What the call answers when it ends early through exit(): what it had produced so far. */
    public function answerSoFar(): array
    {
        if ($this->outputLevel >= 0) { // a script: its output
            $output = '';
            while (ob_get_level() > $this->outputLevel) {
                $output = ob_get_clean() . $output;
            }
            return textAnswer(statusSoFar(), $output);
        }
        return messageAnswer($this->response ?? new Response());
    }
}

/**
 * Runs the call in this (forked) process and never returns.
 * @param resource $pair @param resource $client
 */
function runCall(Instance $instance, CallRequest $req, $pair, $client): never
{
    $call = new Call($instance->entry, $req, $pair, $client);
    CallOutput::begin($req->head->header('x-request-id'));
    register_shutdown_function(static function () use ($call): void {
        if (!$call->answered) {
            $error = error_get_last();
            if ($error !== null && ($error['type'] & FATAL_ERRORS) !== 0) {
                while (ob_get_level() > 0 && ob_get_level() > $call->outputLevel) {
                    ob_end_clean();
                }
                $message = describeFatal($error, $call->entry);
                logLine("call failed: $message");
                $call->send(jsonAnswer(500, errorPayload('FUNCTION_ERROR', $message)));
            } else {
                $call->send($call->answerSoFar()); // exit() in the function
            }
        }
        // Registered from a shutdown function, so it runs after the function's own ones.
        register_shutdown_function(static function (): never {
            CallOutput::$current?->finish();
            fastExit();
        });
    });
    $call->send(invoke($instance, $call, $req));
    exit(0);
}

/** @return array{int, list<array{string,string}>, string} */
function invoke(Instance $instance, Call $call, CallRequest $req): array
{
    $entry = $call->entry;
    $head = $req->head;
    $requestId = $head->header('x-request-id') ?? uuid4();
    $params = [];
    foreach ($head->raw as [$name, $value]) {
        if (strncasecmp($name, 'x-fizz-params-', 14) === 0 && strlen($name) > 14) {
            $params[substr($name, 14)] = $value;
        }
    }
    parse_str($head->query(), $query);
    $request = new ServerRequest(
        $head->method,
        requestUri($head),
        $head->raw,
        $req->body,
        serverParams($head, $req->peer),
        $query,
        $params,
    );
    $call->response = new Response();
    $logger = $instance->logger;
    $context = [
        'request' => $request,
        'response' => $call->response,
        'logger' => $logger,
        'params' => $params,
        'function' => $instance->function,
        'requestId' => $requestId,
    ];
    setSuperglobals($request, $query);
    try {
        if ($entry->function === null) {
            $call->outputLevel = ob_get_level();
            ob_start();
            $result = runScript($entry->file, $logger, $request, $context);
            $output = (string) ob_get_clean();
            $call->outputLevel = -1;
            // `include` gives 1 for a file without its own return: its output is the answer.
            if ($result === 1 || $result === null) {
                return textAnswer(statusSoFar(), $output);
            }
            if ($output !== '') {
                writeOut(1, $output);
            }
            return valueAnswer($result, $call->response);
        }
        return valueAnswer(($entry->function)($context), $call->response);
    } catch (InvalidBody $e) {
        return jsonAnswer(400, errorPayload('INVALID_BODY', $e->getMessage()));
    } catch (\Throwable $e) {
        $message = describeThrowable($e, $entry);
        logLine("call failed: $message");
        return jsonAnswer(500, errorPayload('FUNCTION_ERROR', $message));
    }
}

/** Fission's script form: the file runs whole, with $logger and $request in scope, as there. */
function runScript(string $__fizz_file, Logger $logger, ServerRequest $request, array $context): mixed
{
    return include $__fizz_file;
}

function statusSoFar(): int
{
    $status = http_response_code();
    return is_int($status) && $status >= 100 && $status <= 599 ? $status : 200;
}

/**
 * A handler's return value: a PSR-7 response is the answer; nothing (Fission's way) answers the
 * response the context carried, as the function wrote it; a string is text (bytes that are not
 * UTF-8: application/octet-stream), an array or object JSON. Anything else cannot be an answer.
 * @return array{int, list<array{string,string}>, string}
 */
function valueAnswer(mixed $value, ResponseInterface $contextResponse): array
{
    if ($value === null) {
        return messageAnswer($contextResponse);
    }
    if ($value instanceof ResponseInterface) {
        return messageAnswer($value);
    }
    if (is_string($value)) {
        return textAnswer(200, $value);
    }
    if (is_array($value) || $value instanceof \JsonSerializable || $value instanceof \stdClass) {
        try {
            return [200, [['Content-Type', 'application/json']], jsonEncode($value)];
        } catch (\JsonException $e) {
            throw new \UnexpectedValueException('the returned value cannot be sent as JSON: ' . $e->getMessage());
        }
    }
    throw new \UnexpectedValueException(
        'cannot answer with a value of type ' . get_debug_type($value)
        . ': return a string, an array, a PSR-7 response, or nothing after writing to $context["response"]',
    );
}

/** @return array{int, list<array{string,string}>, string} */
function textAnswer(int $status, string $body): array
{
    return [$status, [['Content-Type', textType($body)]], $body];
}

function textType(string $body): string
{
    return preg_match('//u', $body) === 1 ? 'text/plain; charset=utf-8' : 'application/octet-stream';
}

/** @return array{int, list<array{string,string}>, string} */
function messageAnswer(ResponseInterface $response): array
{
    $status = $response->getStatusCode();
    if (!is_int($status) || $status < 100 || $status > 599) {
        throw new \UnexpectedValueException("invalid status code $status");
    }
    $headers = [];
    $typed = false;
    foreach ($response->getHeaders() as $name => $values) {
        $typed = $typed || strtolower((string) $name) === 'content-type';
        foreach ($values as $value) {
            $headers[] = [(string) $name, (string) $value];
        }
    }
    $body = (string) $response->getBody();
    if (!$typed && $body !== '') {
        // ReactPHP sends no type and lets a browser sniff; text/plain keeps an echo from being HTML.
        $headers[] = ['Content-Type', textType($body)];
    }
    return [$status, $headers, $body];
}

function requestUri(RequestHead $head): Uri
{
    $proto = strtolower($head->header('x-forwarded-proto') ?? '');
    $scheme = $proto === 'https' ? 'https' : 'http';
    $host = $head->header('x-forwarded-host') ?? $head->header('host') ?? 'localhost';
    $port = null;
    if (preg_match('/^(.*):([0-9]{1,5})$/', $host, $m)) {
        [$host, $port] = [$m[1], (int) $m[2]];
    }
    $target = $head->target;
    if (preg_match('#^https?://[^/]*(.*)$#i', $target, $m)) { // absolute-form
        $target = $m[1] === '' ? '/' : $m[1];
    }
    $q = strpos($target, '?');
    $path = $q === false ? $target : substr($target, 0, $q);
    $query = $q === false ? '' : substr($target, $q + 1);
    return new Uri($scheme, '', strtolower($host), $port, $path, $query);
}

function serverParams(RequestHead $head, string $peer): array
{
    // The last X-Forwarded-For entry is the address the gateway saw; earlier ones are claims.
    $forwarded = $head->header('x-forwarded-for');
    $remote = $forwarded === null ? $peer : trim((string) strrchr(',' . $forwarded, ','), ', ');
    $params = [
        'REQUEST_METHOD' => $head->method,
        'REQUEST_URI' => $head->target,
        'QUERY_STRING' => $head->query(),
        'SERVER_PROTOCOL' => $head->version,
        'REMOTE_ADDR' => $remote,
        'REQUEST_TIME' => time(),
        'REQUEST_TIME_FLOAT' => microtime(true),
    ];
    foreach ($head->headers as $name => $value) {
        // A name with "_" would read as the gateway's own (x_fizz_params_id as
        // X-Fizz-Params-Id): left out, as nginx and Apache do.
        if (!str_contains($name, '_')) {
            $params['HTTP_' . strtoupper(str_replace('-', '_', $name))] = $value;
        }
    }
    return $params;
}

/** Plain PHP habits work in a script too: $_GET, $_POST (a urlencoded form), $_COOKIE, $_SERVER. */
function setSuperglobals(ServerRequest $request, array $query): void
{
    $_GET = $query;
    $type = strtolower($request->getHeaderLine('content-type'));
    $_POST = str_starts_with($type, 'application/x-www-form-urlencoded') ? (array) $request->getParsedBody() : [];
    $_COOKIE = $request->getCookieParams();
    $_REQUEST = $_GET + $_POST;
    $_SERVER = array_merge($_SERVER, $request->getServerParams());
}

function uuid4(): string
{
    $b = random_bytes(16);
    $b[6] = chr((ord($b[6]) & 0x0f) | 0x40);
    $b[8] = chr((ord($b[8]) & 0x3f) | 0x80);
    return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
}

function logLine(string $message): void
{
    writeOut(2, "[fizz] $message\n");
}

/**
 * Ends a call's process without PHP's own shutdown (unloading ~30 extensions costs milliseconds
 * of CPU per call): its answer is already with the server process.
 */
function fastExit(): never
{
    global $fizzLibc;
    if ($fizzLibc instanceof \FFI) {
        $fizzLibc->_exit(0);
    }
    posix_kill(posix_getpid(), SIGKILL);
    exit(0);
}
