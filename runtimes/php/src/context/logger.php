<?php
// The PSR-3 logger a function gets as $logger / $context['logger']: one line per record on stdout,
// in the shape of the Monolog line Fission's PHP environment writes
// (`[time] Function.WARNING: message {context} []`), so existing log parsing keeps working.
declare(strict_types=1);

namespace Fizz\Context;

use Psr\Log\LoggerInterface;

final class Logger implements LoggerInterface
{
    private const LEVELS = ['emergency', 'alert', 'critical', 'error', 'warning', 'notice', 'info', 'debug'];

    /** @param resource $stream */
    public function __construct(private readonly string $channel = 'Function', private $stream = null)
    {
    }

    public function emergency($message, array $context = []): void
    {
        $this->log('emergency', $message, $context);
    }

    public function alert($message, array $context = []): void
    {
        $this->log('alert', $message, $context);
    }

    public function critical($message, array $context = []): void
    {
        $this->log('critical', $message, $context);
    }

    public function error($message, array $context = []): void
    {
        $this->log('error', $message, $context);
    }

    public function warning($message, array $context = []): void
    {
        $this->log('warning', $message, $context);
    }

    public function notice($message, array $context = []): void
    {
        $this->log('notice', $message, $context);
    }

    public function info($message, array $context = []): void
    {
        $this->log('info', $message, $context);
    }

    public function debug($message, array $context = []): void
    {
        $this->log('debug', $message, $context);
    }

    public function log($level, $message, array $context = []): void
    {
        if (!is_string($level) || !in_array($level, self::LEVELS, true)) {
            throw new \Psr\Log\InvalidArgumentException('unknown log level ' . var_export($level, true));
        }
        if (!is_string($message) && !$message instanceof \Stringable) {
            throw new \Psr\Log\InvalidArgumentException('a log message must be a string or Stringable');
        }
        $time = (new \DateTimeImmutable())->format('Y-m-d\TH:i:s.uP');
        $data = $context === [] ? '[]' : json_encode(
            array_map(fn ($v) => $v instanceof \Throwable ? (string) $v : $v, $context),
            JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PARTIAL_OUTPUT_ON_ERROR | JSON_INVALID_UTF8_SUBSTITUTE,
        );
        // One line per record: a newline in the message cannot forge another record.
        $text = str_replace(["\r", "\n"], ['\r', '\n'], (string) $message);
        $line = "[$time] {$this->channel}." . strtoupper($level) . ": $text $data []\n";
        if ($this->stream === null) {
            \Fizz\writeOut(1, $line); // marked with the call's request id
        } else {
            fwrite($this->stream, $line);
        }
    }
}
