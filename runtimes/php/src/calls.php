<?php
// Call processes (see loop.php): starting a call (in the spare, or in a fork), the spare forked
// ahead and the messages it gets over its Unix socket, a call's status (W: writing its answer,
// F: at its last write, so its slot is free; D: done), its end, and reaping; the server's side is part of Server (a trait, so the loop's
// state stays in one place), the spare's own side follows it.
declare(strict_types=1);

namespace Fizz;

use Fizz\Context\Response;
use Fizz\Context\ServerRequest;

trait CallProcesses
{
    private function start(Conn $c): void
    {
        $close = !$c->head->keepAlive() || $this->draining;
        $req = new CallRequest($c->head, $c->body, $c->peer, $close, $c->head->method === 'HEAD');
        if ($this->spare !== null && $this->handOver($req, $c)) {
            return;
        }
        if (!$this->ensureLoaded()) {
            $this->respond($c, errorAnswer(new HttpError(503, 'NOT_SPECIALIZED', 'the function failed to load', retryable: true, close: true)), true);
            return;
        }
        $pair = stream_socket_pair(STREAM_PF_UNIX, STREAM_SOCK_STREAM, STREAM_IPPROTO_IP);
        $pid = $pair === false ? -1 : pcntl_fork();
        if ($pid === -1) {
            logLine('cannot start a call: fork failed');
            $this->respond($c, jsonAnswer(503, errorPayload('INTERNAL', 'cannot start the call', retryable: true)), true);
            return;
        }
        if ($pid === 0) {
            fclose($pair[0]);
            $this->becomeCall($c);
            runCall($this->instance, $req, $pair[1], $c->sock);
        }
        fclose($pair[1]);
        stream_set_blocking($pair[0], false);
        stream_set_read_buffer($pair[0], 0);
        $this->running[$pid] = ['conn' => (int) $c->sock, 'pair' => $pair[0], 'buf' => ''];
        $c->body = '';
    }

    private function forkSpare(): void
    {
        if ($this->instance->state === 'specialized' && !$this->ensureLoaded()) {
            return;
        }
        if (!@socket_create_pair(AF_UNIX, SOCK_STREAM, 0, $pair)) {
            $this->sparesWork = false;
            return;
        }
        $pid = pcntl_fork();
        if ($pid === -1) {
            socket_close($pair[0]);
            socket_close($pair[1]);
            return;
        }
        if ($pid === 0) {
            socket_close($pair[0]);
            $this->becomeCall(null);
            warmUp($this->instance);
            for (;;) {
                $got = receiveMessage($pair[1]);
                if ($got === null) {
                    fastExit(); // the server shut down, or is gone
                }
                if (count($got) === 1) {
                    becomeSpecialized($this->instance, $got[0]);
                    if (!empty($got[0]['load'])) {
                        loadHere($this->instance, $got[0]['entry'], $pair[1]);
                    }
                    continue;
                }
                runCall($this->instance, $got[0], socket_export_stream($pair[1]), $got[1]);
            }
        }
        socket_close($pair[1]);
        $warm = $this->instance->state === 'warm';
        $this->spare = ['pid' => $pid, 'sock' => $pair[0], 'stream' => socket_export_stream($pair[0]), 'warm' => $warm];
    }

    /**
     * After a specialize: a spare forked while warm becomes the first call's process if the
     * function is a script (nothing of it ran in the server); a handler's was loaded here, so
     * the spare is replaced by a fork of the loaded server, before the answer goes out, so that
     * it warms up while the answer travels.
     */
    private function specializeSpare(): void
    {
        $instance = $this->instance;
        if ($this->spare !== null && $this->spare['warm'] && $instance->state !== 'warm') {
            $script = $instance->state === 'specialized' && $instance->entry->function === null;
            $specialization = ['entry' => $instance->entry, 'environment' => $instance->environment, 'function' => $instance->function];
            if (!$script || !$this->sendToSpare(serialize($specialization), [])) {
                $this->dropSpare();
            } else {
                $this->spare['warm'] = false;
            }
        }
        if ($instance->state === 'specialized' && $this->sparesWork && $this->spare === null) {
            $this->forkSpare();
        }
    }

    /**
     * A handler file's load, in the warm spare (already faulted in and warmed): its top level
     * runs there, the specialize answers with what it said, and the spare, loaded, takes the
     * first call. The server process loads the file again before its own first fork
     * (ensureLoaded), so the top level runs twice per instance, as PHP's per-request model
     * would run it anyway. False (load it here) when there is no warm spare.
     * @throws LoadError
     */
    private function loadInSpare(Entry $entry): bool
    {
        // A package with Composer's PSR packages must load them before the runtime declares its
        // own interfaces, which this spare did while warm: the server loads it instead.
        if ($this->spare === null || !$this->spare['warm'] || is_dir("{$entry->codeDir}/vendor/psr")) {
            return false;
        }
        $i = $this->instance;
        $message = ['entry' => $entry, 'environment' => $i->environment, 'function' => $i->function, 'load' => true];
        if (!$this->sendToSpare(serialize($message), [])) {
            $this->dropSpare();
            return false;
        }
        $stream = $this->spare['stream'];
        stream_set_blocking($stream, true);
        stream_set_timeout($stream, 600);
        $kind = fread($stream, 1);
        if ($kind === 'L') {
            $this->spare['warm'] = false;
            return true;
        }
        $text = "{$entry->relative}: the function's process ended while loading it";
        if ($kind === 'E') {
            $length = unpack('J', readExactly($stream, 8) . str_repeat("\0", 8))[1];
            $text = readExactly($stream, $length);
        }
        $this->dropSpare();
        throw new LoadError($text);
    }

    /** The function in this process, before it forks a call; false if it does not load here. */
    private function ensureLoaded(): bool
    {
        $i = $this->instance;
        if (!$i->loaded) {
            $i->loaded = true;
            try {
                loadFunction($i->entry);
            } catch (LoadError $e) {
                $i->state = 'failed';
                logLine("the function loaded in its first call's process, not here: {$e->getMessage()}");
                return false;
            }
        }
        prepareContext($i);
        return true;
    }

    private function dropSpare(): void
    {
        if ($this->spare !== null) {
            posix_kill($this->spare['pid'], SIGKILL);
            fclose($this->spare['stream']);
            $this->reap[$this->spare['pid']] = true;
            $this->spare = null;
        }
    }

    /** One message to the spare, with the sockets to pass; false when it is gone. */
    private function sendToSpare(string $data, array $sockets): bool
    {
        $sock = $this->spare['sock'];
        $data = pack('J', strlen($data)) . $data;
        $control = $sockets === [] ? [] : [['level' => SOL_SOCKET, 'type' => SCM_RIGHTS, 'data' => $sockets]];
        $sent = @socket_sendmsg($sock, ['iov' => [substr($data, 0, 65536)], 'control' => $control], 0);
        for ($at = is_int($sent) ? $sent : 0; $sent !== false && $at < strlen($data); $at += $sent) {
            $sent = @socket_write($sock, substr($data, $at, 1 << 20));
        }
        return $sent !== false;
    }

    /** Gives the spare process this call: the request, and the client's socket with it. */
    private function handOver(CallRequest $req, Conn $c): bool
    {
        ['pid' => $pid, 'sock' => $sock, 'stream' => $stream] = $this->spare;
        if (!$this->sendToSpare(serialize($req), [$c->sock])) {
            $this->dropSpare(); // it died waiting: the call gets a fork of its own
            return false;
        }
        $this->spare = null;
        stream_set_blocking($stream, false);
        stream_set_read_buffer($stream, 0);
        $this->running[$pid] = ['conn' => (int) $c->sock, 'pair' => $stream, 'buf' => '', 'sock' => $sock];
        $c->body = '';
        return true;
    }

    /** In the forked call: drop the server's other sockets and its signal handling, die with it. */
    private function becomeCall(?Conn $own): void
    {
        if ($this->spare !== null) {
            fclose($this->spare['stream']);
            $this->spare = null;
        }
        if ($this->listen !== null) {
            fclose($this->listen);
        }
        foreach ($this->conns as $conn) {
            if ($conn !== $own) {
                fclose($conn->sock);
            }
        }
        foreach ($this->running as $call) {
            fclose($call['pair']);
        }
        pcntl_signal(SIGTERM, SIG_DFL);
        pcntl_signal(SIGINT, SIG_DFL);
        global $fizzLibc;
        if ($fizzLibc instanceof \FFI) {
            $fizzLibc->prctl(1, SIGKILL, 0, 0, 0); // PR_SET_PDEATHSIG: never outlive the server
        }
    }

    /** @param resource $pair */
    private function readCall($pair): void
    {
        foreach ($this->running as $pid => &$call) {
            if ($call['pair'] !== $pair) {
                continue;
            }
            $data = @fread($pair, 64);
            if (is_string($data) && $data !== '') {
                $call['buf'] .= $data;
                if (str_contains($call['buf'], 'D')) {
                    unset($call);
                    $this->finish($pid, 'answered');
                } elseif (str_contains($data, 'F')) {
                    unset($call);
                    $this->startQueued(); // its slot is free, though it still writes its answer
                }
                return;
            }
            if (feof($pair)) {
                $this->finish($pid, str_contains($call['buf'], 'W') ? 'partly' : 'nothing');
            }
            return;
        }
    }

    /**
     * The client closed its connection. A call it was waiting for is stopped: the gateway
     * enforces a function's timeout by aborting the request, and nobody can receive the answer.
     */
    private function clientGone(Conn $c): void
    {
        foreach ($this->running as $pid => $call) {
            if ($call['conn'] === (int) $c->sock) {
                $this->close($c);
                $this->readCall($call['pair']);
                // Not once it is writing its answer: then the client simply left after it.
                if (isset($this->running[$pid]) && !str_contains($this->running[$pid]['buf'], 'W')) {
                    posix_kill($pid, SIGKILL);
                    logLine("call stopped: its client went away (process $pid)");
                    $this->finish($pid, 'nothing');
                }
                return;
            }
        }
        $this->close($c);
    }

    /**
     * A call's end. The call's process wrote its answer to the client itself (one hop less than
     * passing it through here); $how says whether it did: answered, partly (it died writing: the
     * connection can only be closed), or nothing (it died before: the 500 is ours to send).
     */
    private function finish(int $pid, string $how): void
    {
        $call = $this->running[$pid];
        unset($this->running[$pid]);
        fclose($call['pair']);
        $this->reap[$pid] = true;
        $c = $this->conns[$call['conn']] ?? null;
        if ($c !== null) {
            if ($how === 'nothing') {
                $status = $this->reapChildren($pid);
                $message = "the function's process ended without answering ($status)";
                logLine("call failed: $message");
                $this->respond($c, jsonAnswer(500, errorPayload('FUNCTION_ERROR', $message)), true);
            } elseif ($how === 'partly' || !$c->head->keepAlive() || $this->draining) {
                $this->close($c);
            } else {
                $c->state = 'writing';
                $c->closeAfter = false;
                $this->flush($c); // back to reading: the next request, maybe already here
            }
        }
        $this->startQueued();
    }

    /**
     * Calls holding a slot: started and not yet at the last write of their answer (F). One past
     * it still owns its connection and process, but a new call may run beside it.
     */
    private function inFlight(): int
    {
        $n = 0;
        foreach ($this->running as $call) {
            if (!str_contains($call['buf'], 'F')) {
                $n++;
            }
        }
        return $n;
    }

    private function startQueued(): void
    {
        while ($this->queue !== [] && $this->inFlight() < $this->instance->concurrency) {
            $next = $this->conns[array_shift($this->queue)] ?? null;
            if ($next !== null) {
                $this->start($next);
            }
        }
    }

    /** Reaps ended call processes; for $pid, describes how it ended. */
    private function reapChildren(?int $pid = null): string
    {
        $how = 'still running';
        foreach (array_keys($this->reap) as $child) {
            $wait = $child === $pid ? 20 : 1; // the one we ask about: give it a moment
            for ($i = 0; $i < $wait; $i++) {
                $r = pcntl_waitpid($child, $status, WNOHANG);
                if ($r !== 0) {
                    unset($this->reap[$child]);
                    if ($child === $pid && $r > 0) {
                        $how = pcntl_wifsignaled($status) ? 'killed by signal ' . pcntl_wtermsig($status) : 'exit status ' . pcntl_wexitstatus($status);
                    }
                    break;
                }
                if ($wait > 1) {
                    usleep(1000);
                }
            }
        }
        return $how;
    }
}

// The spare's own side, in the forked process.

/**
 * A spare process's first steps of a call, on throwaway objects, while it waits: a fork shares
 * the server's memory until it writes to it, and the first touch of each page, allocator and
 * cache (PCRE, parse_str, streams) is what makes a fresh process's first call slow. The user's
 * code is not run.
 */
function warmUp(Instance $instance): void
{
    warmUpPlain();
    // While warm too: a function that brings its own PSR interfaces (vendor/psr) is never given
    // to a spare forked while warm (loadInSpare), so these come first only where nothing else
    // would have provided them.
    loadContextClasses();
    $buffer = "GET /warm?a=1 HTTP/1.1\r\nHost: warm\r\nContent-Type: application/json\r\n\r\n";
    $head = RequestHead::take($buffer);
    $request = new ServerRequest('GET', requestUri($head), $head->raw, '{"a":1}', serverParams($head, '127.0.0.1'), [], []);
    $request->getParsedBody();
    $response = new Response();
    $response->getBody()->write('warm');
    messageAnswer($response->withHeader('X-Warm', 'yes'));
}

/** The part of warmUp that needs none of the context classes. */
function warmUpPlain(): void
{
    $buffer = "GET /warm?a=1&b[]=2 HTTP/1.1\r\nHost: warm\r\n\r\n";
    $head = RequestHead::take($buffer);
    parse_str($head->query(), $query);
    serverParams($head, '127.0.0.1');
    serializeResponse(200, [['Content-Type', textType('warm')]], jsonEncode(['warm' => [1, 'two']]), false);
    json_decode('{"warm":[1,"two"]}', true);
    uuid4();
    ob_start();
    echo 'warm';
    ob_end_clean();
    // Fault in some heap pages the call's allocations will use.
    $pages = str_repeat('w', 256 * 1024);
    unset($pages);
}

/**
 * A spare call process's next message from the server: its specialization (a spare forked while
 * the instance was warm, for a script), or its call: the request and the client's socket. Null
 * when the server closed the pair instead (shutdown, or gone).
 * @return array{CallRequest, resource}|array{array}|null
 */
function receiveMessage(\Socket $pair): ?array
{
    // A stream socket keeps no message boundaries: bytes past this message (the call after a
    // specialization) stay here for the next one, and passed sockets queue in arrival order.
    static $buffer = '';
    static $sockets = [];
    while (strlen($buffer) < 8 || strlen($buffer) < 8 + unpack('J', substr($buffer, 0, 8))[1]) {
        $message = ['buffer_size' => 1 << 20, 'controllen' => socket_cmsg_space(SOL_SOCKET, SCM_RIGHTS, 1)];
        if (!@socket_recvmsg($pair, $message, 0) || ($message['iov'][0] ?? '') === '') {
            return null;
        }
        $buffer .= $message['iov'][0];
        foreach ($message['control'] ?? [] as $control) {
            foreach ($control['data'] ?? [] as $socket) {
                $sockets[] = $socket;
            }
        }
    }
    $length = unpack('J', substr($buffer, 0, 8))[1];
    $data = substr($buffer, 8, $length);
    $buffer = substr($buffer, 8 + $length);
    $got = unserialize($data, ['allowed_classes' => [CallRequest::class, RequestHead::class, Entry::class]]);
    if ($got instanceof CallRequest) {
        $client = array_shift($sockets);
        return $client instanceof \Socket ? [$got, socket_export_stream($client)] : null;
    }
    return is_array($got) && ($got['entry'] ?? null) instanceof Entry ? [$got] : null;
}

/** A spare forked while warm takes the specialization the server made (a script's). */
function becomeSpecialized(Instance $instance, array $specialization): void
{
    applyEnvironment($specialization['environment'], $specialization['entry']->codeDir);
    $instance->environment = $specialization['environment'];
    $instance->entry = $specialization['entry'];
    $instance->function = $specialization['function'];
    prepareContext($instance);
    $instance->state = 'specialized';
}

/**
 * A handler file's top level, run in the warm spare on the server's behalf (loadInSpare): L when
 * it loaded, E and the message (file and line) when it did not, even from a fatal error.
 */
function loadHere(Instance $instance, Entry $entry, \Socket $pair): void
{
    $done = false;
    register_shutdown_function(static function () use (&$done, $entry, $pair): void {
        if ($done) {
            return;
        }
        $error = error_get_last();
        $message = $error !== null && ($error['type'] & FATAL_ERRORS) !== 0
            ? describeFatal($error, $entry)
            : "{$entry->relative}: exit() while loading the function";
        loadReply($pair, $message);
    });
    try {
        loadFunction($entry);
    } catch (LoadError $e) {
        $done = true;
        loadReply($pair, $e->getMessage());
        fastExit();
    }
    $done = true;
    @socket_write($pair, 'L');
}

function loadReply(\Socket $pair, string $message): void
{
    $data = 'E' . pack('J', strlen($message)) . $message;
    for ($at = 0; $at < strlen($data); $at += $sent) {
        $sent = @socket_write($pair, substr($data, $at));
        if ($sent === false || $sent === 0) {
            return;
        }
    }
}

/** @param resource $stream */
function readExactly($stream, int $length): string
{
    $data = '';
    while (strlen($data) < $length) {
        $piece = fread($stream, $length - strlen($data));
        if ($piece === false || $piece === '') {
            break;
        }
        $data .= $piece;
    }
    return $data;
}
