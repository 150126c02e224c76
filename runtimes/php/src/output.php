<?php
// A call's output with its call marker (shared/events/src/logs.ts): the platform tags the lines
// after `\e_fizz:call=<id>\e\\` with request <id>, until `\e_fizz:call=\e\\`.
//
// Calls run in processes of their own, at the same time, all writing to the instance's stdout and
// stderr: a marker one process writes says nothing about the lines another writes next. So each
// write of a call is whole on its own: its marker, its complete lines, and the clearing marker, in
// one write(2) of at most 4 KiB (atomic on a pipe), and the capturer is back to "no call" after each.
// A line still open (no newline yet) waits for its end, or for the call's end. A call that prints
// nothing writes nothing more; anything written around this (fwrite(STDERR), error_log()) is
// shown untagged, never as another call's.
declare(strict_types=1);

namespace Fizz;

final class CallOutput
{
    public static ?CallOutput $current = null;

    /** Longest open line kept waiting for its end (the capturer cuts lines at 16 KiB anyway). */
    private const MAX_OPEN = 16384;
    private const PIPE_BUF = 4096;

    /** @var array<int, string> the open line of stdout (1) and stderr (2) */
    private array $open = [1 => '', 2 => ''];
    private int $level;

    private function __construct(private readonly string $marker)
    {
        // echo, print and everything else PHP writes to the output layer, flushed after each
        // write (chunk size 1), so a call's echo reaches the log as soon as its line ends.
        ob_start(fn (string $buffer): string => $this->take(1, $buffer), 1);
        $this->level = ob_get_level();
        // PHP's warnings, notices and deprecations are the call's too: written here, marked, and
        // left to PHP's own handler (return false) so that error_get_last() still sees them,
        // with its display off so they are not printed twice. Fatal errors do not come here: the
        // runtime's "call failed" line reports them, marked.
        ini_set('display_errors', '0');
        set_error_handler(function (int $type, string $message, string $file, int $line): bool {
            if ((error_reporting() & $type) !== 0) {
                $this->take(2, self::LABELS[$type] . ": $message in $file on line $line\n");
            }
            return false;
        }, array_sum(array_keys(self::LABELS)));
    }

    private const LABELS = [
        E_WARNING => 'Warning',
        E_USER_WARNING => 'Warning',
        E_NOTICE => 'Notice',
        E_USER_NOTICE => 'Notice',
        E_DEPRECATED => 'Deprecated',
        E_USER_DEPRECATED => 'Deprecated',
    ];

    /** Starts marking this process's call: a request id the platform gave (else nothing is tagged). */
    public static function begin(?string $requestId): void
    {
        if ($requestId !== null && preg_match('/^[A-Za-z0-9._:-]{1,128}$/D', $requestId) === 1) {
            self::$current = new CallOutput($requestId);
        }
    }

    /** Writes the lines of a call's output, marked; the tail of an unended line waits. */
    public function take(int $fd, string $text): string
    {
        $text = $this->open[$fd] . $text;
        $end = strrpos($text, "\n");
        if ($end === false) {
            if (strlen($text) <= self::MAX_OPEN) {
                $this->open[$fd] = $text;
                return '';
            }
            [$lines, $this->open[$fd]] = [$text . "\n", ''];
        } else {
            [$lines, $this->open[$fd]] = [substr($text, 0, $end + 1), (string) substr($text, $end + 1)];
        }
        $this->write($fd, $lines);
        return '';
    }

    /** The call is over: output still buffered above this layer, and open lines (ended here). */
    public function finish(): void
    {
        while (ob_get_level() >= $this->level) {
            if (!@ob_end_flush()) {
                break;
            }
        }
        foreach ($this->open as $fd => $line) {
            if ($line !== '') {
                $this->open[$fd] = '';
                $this->write($fd, $line . "\n");
            }
        }
        self::$current = null;
    }

    /**
     * One write per piece of at most PIPE_BUF bytes, cut between lines: a longer write to a pipe
     * may be interleaved with another process's, which would land inside this call's piece.
     */
    private function write(int $fd, string $lines): void
    {
        $open = "\e_fizz:call={$this->marker}\e\\\n";
        $close = "\e_fizz:call=\e\\\n";
        $room = self::PIPE_BUF - strlen($open) - strlen($close);
        $stream = $fd === 1 ? STDOUT : STDERR;
        for ($at = 0, $n = strlen($lines); $at < $n; $at = $end) {
            $end = $n;
            if ($n - $at > $room) {
                $cut = strrpos(substr($lines, $at, $room), "\n");
                // A line longer than the room goes whole, in a write of its own.
                $end = $cut === false ? (int) strpos($lines, "\n", $at) + 1 : $at + $cut + 1;
            }
            @fwrite($stream, $open . substr($lines, $at, $end - $at) . $close);
        }
    }
}

/** Output of the function or about its call: the call's, marked, when one runs in this process. */
function writeOut(int $fd, string $text): void
{
    if (CallOutput::$current !== null) {
        CallOutput::$current->take($fd, $text);
        return;
    }
    @fwrite($fd === 1 ? STDOUT : STDERR, $text);
}
