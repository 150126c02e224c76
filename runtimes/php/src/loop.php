<?php
// The server process: one stream_select loop that accepts connections, reads requests without
// blocking, answers the internal endpoints itself, and runs each call in a process forked from
// the specialized server (calls.php, invoke.php). php-cli has no threads; a process per call gives every
// call its own interpreter state at the cost of ~1 ms, and a fatal error, exit() or crash in a
// call ends only that call's process. "In flight" is a call whose process runs: at most
// `concurrency` of them; up to `concurrency` more requests wait, read, in the queue; past that,
// 429 INSTANCE_BUSY. The loop never runs user code itself, so it reads (and counts) requests
// that arrive while calls run.
declare(strict_types=1);

namespace Fizz;

const IDLE_SECONDS = 60;

final class Conn
{
    public string $in = '';
    public string $out = '';
    public string $state = 'head'; // head | body | waiting | writing
    public ?RequestHead $head = null;
    public ?BodyDecoder $decoder = null;
    public string $body = '';
    public bool $closeAfter = false;
    public float $active;

    /** @param resource $sock */
    public function __construct(public $sock, public readonly string $peer)
    {
        $this->active = microtime(true);
    }
}

final class Server
{
    use CallProcesses;

    /** @var resource|null */
    private $listen;
    /** @var array<int, Conn> */
    private array $conns = [];
    /** @var list<int> conn ids waiting for a slot */
    private array $queue = [];
    /** @var array<int, array{conn:int, pair:resource, buf:string}> pid => call; buf: its W and D bytes */
    private array $running = [];
    /** @var array<int, true> pids answered but not reaped */
    private array $reap = [];
    private bool $stopRequested = false;
    private bool $draining = false;
    private ?Conn $specializing = null;
    /**
     * A call process forked ahead, asleep until a request (and its client's socket, passed over
     * a Unix socket) arrives: the first call after specialize and any call that finds it ready
     * skip the fork, and a woken process runs sooner than a new one on a busy CPU.
     * @var array{pid:int, sock:\Socket, stream:resource, warm:bool}|null
     */
    private ?array $spare = null;
    private bool $stdinOpen;
    private bool $sparesWork;

    public function __construct(private readonly Instance $instance)
    {
        $this->stdinOpen = $instance->parentStdin;
        $this->sparesWork = function_exists('socket_create_pair') && function_exists('socket_sendmsg');
        if ($this->sparesWork) {
            $instance->loadElsewhere = fn (Entry $entry): bool => $this->loadInSpare($entry);
        }
    }

    public function run(): never
    {
        $host = str_contains($this->instance->host, ':') ? "[{$this->instance->host}]" : $this->instance->host;
        $listen = @stream_socket_server("tcp://$host:{$this->instance->port}", $errno, $errstr, context: stream_context_create(['socket' => ['backlog' => 511, 'so_reuseport' => false]]));
        if ($listen === false) {
            logLine("cannot listen on $host:{$this->instance->port}: $errstr");
            exit(1);
        }
        stream_set_blocking($listen, false);
        $this->listen = $listen;
        pcntl_async_signals(true);
        pcntl_signal(SIGTERM, fn () => $this->stopRequested = true);
        pcntl_signal(SIGINT, fn () => $this->stopRequested = true);
        pcntl_signal(SIGPIPE, SIG_IGN); // a client gone mid-answer is a failed write, not our death
        register_shutdown_function(fn () => $this->onShutdown());
        if ($this->stdinOpen) {
            stream_set_blocking(STDIN, false);
        }
        logLine("php runtime listening on $host:{$this->instance->port} (php " . PHP_VERSION . ')');
        for (;;) {
            if ($this->stopRequested && !$this->draining) {
                $this->drain();
            }
            if ($this->draining && $this->running === [] && $this->queue === [] && $this->conns === []) {
                logLine('drained; exiting');
                exit(0);
            }
            $this->tick();
        }
    }

    private function tick(): void
    {
        $read = [];
        $write = [];
        // Calls first: a call's "answered" is seen before its client's leaving after the answer.
        foreach ($this->running as $call) {
            $read[] = $call['pair'];
        }
        if ($this->listen !== null) {
            $read[] = $this->listen;
        }
        if ($this->stdinOpen) {
            $read[] = STDIN;
        }
        foreach ($this->conns as $c) {
            // A waiting connection is read too, to see its client leave (or pipeline a little).
            if ($c->state === 'head' || $c->state === 'body' || ($c->state === 'waiting' && strlen($c->in) < 65536)) {
                $read[] = $c->sock;
            }
            if ($c->out !== '') {
                $write[] = $c->sock;
            }
        }
        $except = null;
        // Forked only when no call runs: a fork (and the spare's warm-up) must not take their CPU.
        // A warm instance has one too: specialized with a script, it is the first call's process.
        $state = $this->instance->state;
        $wantSpare = $this->spare === null && $this->running === [] && ($state === 'specialized' || $state === 'warm')
            && !$this->draining && $this->sparesWork;
        [$seconds, $micros] = $wantSpare ? [0, 0] : ($this->reap === [] ? [1, 0] : [0, 20000]);
        $ready = @stream_select($read, $write, $except, $seconds, $micros);
        $this->reapChildren();
        $this->closeIdle();
        if ($ready === false || $ready === 0) {
            if ($ready === 0 && $wantSpare) {
                $this->forkSpare(); // nothing to do: prepare the next call's process
            }
            return; // a signal, or the timeout
        }
        foreach ($write as $sock) {
            $c = $this->conns[(int) $sock] ?? null;
            if ($c !== null) {
                $this->flush($c);
            }
        }
        foreach ($read as $sock) {
            if ($sock === $this->listen) {
                $this->accept();
            } elseif ($sock === STDIN) {
                $this->readStdin();
            } elseif (isset($this->conns[(int) $sock])) {
                $this->readConn($this->conns[(int) $sock]);
            } else {
                $this->readCall($sock);
            }
        }
    }

    /**
     * Connections idle for a minute while the runtime waits on their client (between requests,
     * or a head or body that stopped coming) are closed, so they cannot pile up.
     */
    private function closeIdle(): void
    {
        $now = microtime(true);
        static $swept = 0.0;
        if ($now - $swept < 1) {
            return;
        }
        $swept = $now;
        foreach ($this->conns as $c) {
            if (($c->state === 'head' || $c->state === 'body') && $now - $c->active > IDLE_SECONDS) {
                $this->close($c);
            }
        }
    }

    private function accept(): void
    {
        while ($this->listen !== null && ($sock = @stream_socket_accept($this->listen, 0, $peer)) !== false) {
            stream_set_blocking($sock, false);
            stream_set_read_buffer($sock, 0);
            stream_set_write_buffer($sock, 0);
            $address = preg_replace('/:[0-9]+$/', '', (string) $peer);
            $this->conns[(int) $sock] = new Conn($sock, trim((string) $address, '[]'));
        }
    }

    private function readStdin(): void
    {
        $data = fread(STDIN, 65536);
        if (($data === '' || $data === false) && feof(STDIN)) {
            $this->stdinOpen = false;
            $this->stopRequested = true; // the parent is gone: shut down as on SIGTERM
        }
    }

    private function readConn(Conn $c): void
    {
        $data = @fread($c->sock, 65536);
        if ($data === false || $data === '') {
            if ($data === false || feof($c->sock)) {
                $this->clientGone($c);
            }
            return;
        }
        $c->in .= $data;
        $c->active = microtime(true);
        if ($c->state !== 'waiting') {
            $this->advance($c);
        }
    }

    /** Parses what has arrived on $c: a head, then its body, then admits the request. */
    private function advance(Conn $c): void
    {
        try {
            if ($c->state === 'head') {
                $head = RequestHead::take($c->in);
                if ($head === null) {
                    return;
                }
                $c->head = $head;
                if (!$this->route($c)) {
                    return;
                }
            }
            if ($c->state === 'body') {
                $c->body .= $c->decoder->push($c->in);
                $c->in = '';
                if (!$c->decoder->done) {
                    return;
                }
                $c->in = $c->decoder->rest;
                $c->state = 'waiting';
                $this->admit($c);
            }
        } catch (HttpError $e) {
            $this->respond($c, errorAnswer($e), $e->close);
        }
    }

    /** The internal endpoints, or the checks before a call's body is read; true: read its body. */
    private function route(Conn $c): bool
    {
        $head = $c->head;
        $target = $head->header('x-fizz-instance');
        if ($target === null) {
            $path = $head->path();
            if (($path === '/healthz' || $path === '/readyz') && ($head->method === 'GET' || $head->method === 'HEAD')) {
                $this->respondInternal($c, $path);
                return false;
            }
            if ($path === '/v2/specialize' && $head->method === 'POST') {
                $this->specialize($c);
                return false;
            }
        } elseif ($this->instance->instanceId !== null && $target !== $this->instance->instanceId) {
            throw new HttpError(421, 'MISDIRECTED', "this is instance {$this->instance->instanceId}, not $target", retryable: true, close: true);
        }
        if ($this->instance->state !== 'specialized' || $this->draining) {
            $why = $this->draining ? 'this instance is shutting down' : 'this instance has no function loaded';
            throw new HttpError(503, 'NOT_SPECIALIZED', $why, retryable: true, close: true);
        }
        $c->decoder = new BodyDecoder($head, $this->instance->maxBody);
        $c->body = '';
        $this->continue($c);
        $c->state = 'body';
        return true;
    }

    /**
     * `Expect: 100-continue`: the interim answer, written now (a fresh socket has room for it), so
     * that it cannot follow the answer a call's process writes to the same socket.
     */
    private function continue(Conn $c): void
    {
        if (strtolower($c->head->header('expect') ?? '') === '100-continue') {
            @fwrite($c->sock, "HTTP/1.1 100 Continue\r\n\r\n");
        }
    }

    private function respondInternal(Conn $c, string $path): void
    {
        $state = $this->instance->state;
        // A GET with a body is odd; not reading it means closing after the answer.
        $unread = $c->head->header('content-length') !== null && $c->head->header('content-length') !== '0'
            || $c->head->header('transfer-encoding') !== null;
        if ($path === '/healthz') {
            $this->respond($c, jsonAnswer(200, ['status' => 'ok', 'state' => $state]), $unread);
        } elseif ($state === 'specialized' && !$this->draining) {
            $this->respond($c, jsonAnswer(200, ['status' => 'ready']), $unread);
        } else {
            $why = $this->draining ? 'shutting down' : "not ready: the instance is $state";
            $this->respond($c, jsonAnswer(503, errorPayload('NOT_READY', $why, retryable: true)), $unread);
        }
    }

    /** POST /v2/specialize, read blocking (there is nothing else to serve yet). */
    private function specialize(Conn $c): void
    {
        $head = $c->head;
        $close = true;
        try {
            if (!$this->instance->authorized($head->header('x-fizz-specialize-token'))) {
                throw new HttpError(401, 'UNAUTHENTICATED', 'a valid X-Fizz-Specialize-Token is required', field: 'x-fizz-specialize-token', close: true);
            }
            $this->instance->mustBeWarm();
            $archive = strtolower(trim(explode(';', $head->header('content-type') ?? '')[0])) === ARCHIVE_CONTENT_TYPE;
            $limit = $archive ? PHP_INT_MAX : $this->instance->maxBody;
            $decoder = new BodyDecoder($head, $limit);
            $this->continue($c);
            stream_set_blocking($c->sock, true);
            stream_set_timeout($c->sock, 60);
            $next = function () use ($c, $decoder): ?string {
                if ($decoder->done) {
                    return null;
                }
                if ($c->in !== '') {
                    $data = $c->in;
                    $c->in = '';
                } else {
                    $data = fread($c->sock, 65536);
                    if ($data === false || $data === '') {
                        throw new HttpError(400, 'BAD_REQUEST', 'the request body ended early', close: true);
                    }
                }
                $piece = $decoder->push($data);
                if ($decoder->done) {
                    $c->in = $decoder->rest;
                }
                return $piece;
            };
            $this->specializing = $c;
            if ($archive) {
                $answer = specializeArchive($this->instance, $next);
            } else {
                $body = '';
                while (($piece = $next()) !== null) {
                    $body .= $piece;
                }
                $answer = specializeJson($this->instance, $body);
            }
            $close = !$decoder->done;
        } catch (HttpError $e) {
            $answer = errorAnswer($e);
            $close = $e->close || !isset($decoder) || !$decoder->done;
        } finally {
            $this->specializing = null;
        }
        stream_set_blocking($c->sock, false);
        $this->specializeSpare();
        $this->respond($c, $answer, $close);
    }

    private function admit(Conn $c): void
    {
        $limit = $this->instance->concurrency;
        if ($this->inFlight() < $limit) {
            $this->start($c);
        } elseif (count($this->queue) < $limit) {
            $this->queue[] = (int) $c->sock;
        } else {
            $message = "this instance runs $limit calls and queues $limit more; retry";
            $this->respond($c, errorAnswer(new HttpError(429, 'INSTANCE_BUSY', $message, retryable: true)), false);
        }
    }

    /** @param array{int, list<array{string,string}>, string} $answer */
    private function respond(Conn $c, array $answer, bool $close): void
    {
        [$status, $headers, $body] = $answer;
        $close = $close || $this->draining;
        $isHead = $c->head !== null && $c->head->method === 'HEAD';
        $c->out .= serializeResponse($status, $headers, $body, $close, $isHead);
        $c->closeAfter = $close;
        $c->state = 'writing';
        $this->flush($c);
    }

    private function flush(Conn $c): void
    {
        if ($c->out !== '') {
            $written = @fwrite($c->sock, $c->out);
            if ($written === false) {
                $this->close($c);
                return;
            }
            $c->out = (string) substr($c->out, $written);
        }
        if ($c->out !== '' || $c->state !== 'writing') {
            return;
        }
        if ($c->closeAfter) {
            $this->close($c);
            return;
        }
        $c->state = 'head';
        $c->head = null;
        $c->decoder = null;
        $c->active = microtime(true);
        if ($c->in !== '') {
            $this->advance($c); // a pipelined request
        }
    }

    private function close(Conn $c): void
    {
        $id = (int) $c->sock;
        @fclose($c->sock);
        unset($this->conns[$id]);
        $this->queue = array_values(array_filter($this->queue, fn ($q) => $q !== $id));
    }

    /** SIGTERM or the parent's stdin closed: refuse new work, finish what was accepted. */
    private function drain(): void
    {
        $this->draining = true;
        $this->dropSpare();
        logLine('draining: finishing ' . count($this->running) . ' call(s) in flight and ' . count($this->queue) . ' queued');
        if ($this->listen !== null) {
            fclose($this->listen);
            $this->listen = null;
        }
        foreach ($this->conns as $c) {
            if ($c->state === 'head') {
                $this->close($c);
            }
        }
    }

    /**
     * The process is ending. If that is the function's top level at specialize (a fatal error or
     * exit() while loading a handler file), the specialize still gets its answer.
     */
    private function onShutdown(): void
    {
        $entry = $GLOBALS['fizzLoading'] ?? null;
        $c = $this->specializing;
        if (!$entry instanceof Entry || $c === null) {
            return;
        }
        $error = error_get_last();
        $message = $error !== null && ($error['type'] & FATAL_ERRORS) !== 0
            ? describeFatal($error, $entry)
            : "{$entry->relative}: exit() while loading the function";
        logLine("failed to load: $message; the instance exits");
        while (ob_get_level() > 0) {
            ob_end_clean();
        }
        stream_set_blocking($c->sock, true);
        @fwrite($c->sock, serializeResponse(500, [['Content-Type', 'application/json']], jsonEncode(errorPayload('FUNCTION_LOAD_FAILED', $message)), true));
    }
}
