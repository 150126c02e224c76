<?php
// Which code a specialize names, and loading it: the entry point (Fission's `file::function`,
// Fizz's `function` and `file.function`, or a script run whole on every call), the syntax check,
// and load errors as one line naming the user's file and line (`hello.php:2: ParseError: ...`).
declare(strict_types=1);

namespace Fizz;

/** The user's code did not load; the message is meant for the user. */
final class LoadError extends \Exception
{
}

/** What a call runs: a function of $file, or ($function null) the file itself, as a script. */
final class Entry
{
    public function __construct(
        public readonly string $file,
        public readonly string $relative,
        public readonly ?string $function,
        public readonly string $codeDir,
    ) {
    }
}

const DEFAULT_PACKAGE_MAIN = 'index.php';
const DEFAULT_HANDLER = 'handler';
const FUNCTION_NAME = '[A-Za-z_\\\\][A-Za-z0-9_\\\\]*';

/**
 * The entry point's meaning. $singleFile is the pushed file's name (the JSON form) or null for a
 * package, whose files are under $codeDir.
 * @throws LoadError
 */
function resolveEntry(string $codeDir, ?string $singleFile, ?string $entrypoint): Entry
{
    $file = $singleFile ?? DEFAULT_PACKAGE_MAIN;
    $function = null;
    $detect = false;
    if ($entrypoint === null) {
        $detect = true;
    } elseif (str_contains($entrypoint, '::')) {
        // Fission: `<file path>::<function>`; for a single file the path is the file itself.
        [$module, $function] = explode('::', $entrypoint, 2);
        $file = $singleFile ?? $module;
    } elseif (str_ends_with($entrypoint, '.php')) {
        // Fission's functionName without `::`: the file, run as a script.
        $file = $singleFile ?? $entrypoint;
    } elseif (preg_match('/^(.*)\.(' . FUNCTION_NAME . ')$/', $entrypoint, $m)) {
        $named = $m[1] . '.php';
        if ($singleFile !== null && $named !== $singleFile) {
            throw new LoadError("$singleFile: entrypoint \"$entrypoint\" names $named, which is not the function's file");
        }
        $file = $named;
        $function = $m[2];
    } else {
        $function = $entrypoint;
    }
    $path = $codeDir . '/' . $file;
    if (!is_file($path)) {
        throw new LoadError("$file: no such file in the package");
    }
    $declared = declaredFunctions($path, $file);
    if ($detect && in_array(DEFAULT_HANDLER, $declared, true)) {
        $function = DEFAULT_HANDLER;
    }
    return new Entry($path, $file, $function === null ? null : ltrim($function, '\\'), $codeDir);
}

/**
 * Parses the file (a syntax error is a LoadError naming its line) and lists the functions it
 * declares at its top level, namespaced and lower-cased. The tokenizer's parse mode runs PHP's
 * own parser without compiling or running anything, so a script is checked at specialize
 * without running it.
 * @return list<string>
 * @throws LoadError
 */
function declaredFunctions(string $path, string $relative): array
{
    try {
        $tokens = token_get_all((string) file_get_contents($path), TOKEN_PARSE);
    } catch (\ParseError $e) {
        throw new LoadError("$relative:{$e->getLine()}: ParseError: {$e->getMessage()}");
    }
    $names = [];
    $depth = 0;
    $namespace = '';
    $namespaceDepth = 0;
    $count = count($tokens);
    for ($i = 0; $i < $count; $i++) {
        $t = $tokens[$i];
        if ($t === '{') {
            $depth++;
        } elseif ($t === '}') {
            $depth--;
        } elseif (is_array($t) && ($t[0] === T_CURLY_OPEN || $t[0] === T_DOLLAR_OPEN_CURLY_BRACES)) {
            $depth++;
        } elseif (is_array($t) && $t[0] === T_NAMESPACE) {
            $j = $i;
            $next = nextToken($tokens, $j);
            if (is_array($next) && in_array($next[0], [T_STRING, T_NAME_QUALIFIED], true)) {
                $namespace = $next[1] . '\\';
                $namespaceDepth = $depth;
                // `namespace X { ... }` puts its declarations one level down.
                $after = nextToken($tokens, $j);
                if ($after === '{' || (is_array($after) && $after[1] === '{')) {
                    $namespaceDepth = $depth + 1;
                }
            } elseif ($next === '{' || (is_array($next) && $next[1] === '{')) {
                $namespace = '';
                $namespaceDepth = $depth + 1;
            }
        } elseif (is_array($t) && $t[0] === T_FUNCTION && $depth === $namespaceDepth) {
            $j = $i;
            $next = nextToken($tokens, $j);
            if (is_array($next) && $next[0] === T_AMPERSAND_NOT_FOLLOWED_BY_VAR_OR_VARARG) {
                $next = nextToken($tokens, $j);
            }
            if (is_array($next) && $next[0] === T_STRING) {
                $names[] = strtolower($namespace . $next[1]);
            }
        }
    }
    return $names;
}

/** The next token after $i that is not whitespace or a comment; moves $i onto it. */
function nextToken(array $tokens, int &$i): array|string|null
{
    for ($i++, $n = count($tokens); $i < $n; $i++) {
        $t = $tokens[$i];
        if (!is_array($t) || !in_array($t[0], [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT], true)) {
            return $t;
        }
    }
    return null;
}

/**
 * Runs a handler file's top level once, in the server process, so every call (a fork of it)
 * finds the function defined. Its output goes to the log, as Fission's does.
 * @throws LoadError
 */
function loadFunction(Entry $entry): void
{
    ob_start();
    try {
        (static function (string $__fizz_file): void {
            include $__fizz_file;
        })($entry->file);
    } catch (\Throwable $e) {
        throw new LoadError(describeThrowable($e, $entry));
    } finally {
        $output = ob_get_clean();
        if (is_string($output) && $output !== '') {
            fwrite(STDOUT, $output);
        }
    }
    if (!function_exists($entry->function ?? '')) {
        throw new LoadError("{$entry->relative}: entrypoint \"{$entry->function}\" is not a function");
    }
}

/** `file:line: Class: message`, naming the first place in the user's code that the error passed. */
function describeThrowable(\Throwable $e, Entry $entry): string
{
    [$file, $line] = userFrame($e, $entry);
    $class = (new \ReflectionClass($e))->getShortName();
    $where = $line === null ? $file : "$file:$line";
    return "$where: $class: {$e->getMessage()}";
}

/**
 * The user's file (relative to the code) and line an error came from; the entry file without a
 * line when no frame is in the user's code (the runtime refusing what the function returned).
 * @return array{string,?int}
 */
function userFrame(\Throwable $e, Entry $entry): array
{
    $prefix = $entry->codeDir . '/';
    if (str_starts_with($e->getFile(), $prefix)) {
        return [substr($e->getFile(), strlen($prefix)), $e->getLine()];
    }
    foreach ($e->getTrace() as $frame) {
        if (isset($frame['file']) && str_starts_with($frame['file'], $prefix)) {
            return [substr($frame['file'], strlen($prefix)), (int) ($frame['line'] ?? 0)];
        }
    }
    return [$entry->relative, null];
}

/** The same for a fatal error (error_get_last()). */
function describeFatal(array $error, Entry $entry): string
{
    $prefix = $entry->codeDir . '/';
    $file = str_starts_with($error['file'], $prefix) ? substr($error['file'], strlen($prefix)) : $entry->relative;
    $message = explode("\nStack trace:", $error['message'], 2)[0];
    return "$file:{$error['line']}: PHP Fatal error: $message";
}
