<?php
// Fizz's PHP runtime (docs/runtime-contract.md): `php runtimes/php/server.php`. Standard library
// only (pcntl, posix, zlib, tokenizer, FFI when present: all in Debian's php-cli).
declare(strict_types=1);

namespace Fizz;

// PHP's own warnings go to the log, never into a function's answer.
ini_set('display_errors', 'stderr');
ini_set('log_errors', '0');
error_reporting(E_ALL);

require __DIR__ . '/src/http.php';
require __DIR__ . '/src/instance.php';
require __DIR__ . '/src/loader.php';
require __DIR__ . '/src/output.php';
require __DIR__ . '/src/invoke.php';
require __DIR__ . '/src/specialize.php';
require __DIR__ . '/src/calls.php';
require __DIR__ . '/src/loop.php';

// First, before anything else reads the environment: the specialize token is taken out of it.
$instance = new Instance();

// libc through FFI, when enabled: a call's process dies with the server (PR_SET_PDEATHSIG) and
// ends with _exit(); without it, calls end with SIGKILL and may outlive a killed server.
$fizzLibc = null;
if (extension_loaded('ffi')) {
    try {
        $fizzLibc = \FFI::cdef('void _exit(int status); int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);', 'libc.so.6');
    } catch (\Throwable) {
        $fizzLibc = null;
    }
}

(new Server($instance))->run();
