// The PHP runtime as the contract suite runs it (Debian's /usr/bin/php), and the user functions
// (in PHP) the contract calls: see runtimes/contract/runtime-under-test.ts for what each must do.
import { fileURLToPath } from "node:url";
import { startRuntime } from "../../contract/harness.js";
import type { PackageFixtures, RuntimeUnderTest, Source } from "../../contract/runtime-contract.js";

export const PHP = process.env.FIZZ_PHP ?? "/usr/bin/php";

export const SERVER = {
  name: "php",
  command: PHP,
  script: fileURLToPath(new URL("../server.php", import.meta.url)),
};

/** Fission's hello world: a script whose output is the answer. */
export const HELLO: Source = {
  filename: "hello.php",
  source: `<?php\necho "Hello, world!\\n";\n`,
};

/** The contract's kinds, in Fission's handler form (`function handler($context)`, PSR-7). */
export const KINDS: Source = {
  filename: "kinds.php",
  source: `<?php
function handler($context)
{
    $request = $context['request'];
    $response = $context['response'];
    $query = $request->getQueryParams();
    switch ($query['kind'] ?? null) {
        case 'echo':
            $headers = [];
            foreach ($request->getHeaders() as $name => $values) {
                $headers[strtolower($name)] = implode(', ', $values);
            }
            return [
                'method' => $request->getMethod(),
                'path' => $request->getUri()->getPath(),
                'query' => $query,
                'headers' => $headers,
                'body' => $request->getParsedBody(),
                'params' => $context['params'],
                'function' => $context['function'],
                'requestId' => $context['requestId'],
            ];
        case 'text':
            $body = (string) $request->getBody();
            return ['text' => $body, 'length' => strlen($body)];
        case 'json':
            return ['hello' => ['world']];
        case 'list':
            return [1, 'two'];
        case 'created':
            $response->getBody()->write(json_encode(['created' => true]));
            return $response->withStatus(201)
                ->withHeader('X-Custom', 'yes')
                ->withHeader('Content-Type', 'application/json');
        case 'accepted':
            $response->getBody()->write('accepted');
            return $response->withStatus(202);
        case 'not-a-response':
            return ['status' => 'ok'];
        case 'bytes':
            return "\\x00\\x01\\x02\\xff";
        case 'env':
            return getenv('GREETING');
        case 'log':
            echo "log line from the function\\n";
            return 'logged';
        case 'throw':
            throw new RuntimeException('boom from the function');
        case 'unsendable':
            return 42;
    }
    return 'plain';
}
`,
};

/** The contract's configReader (runtimes/contract/runtime-under-test.ts). */
const CONFIG_READER: Source = {
  filename: "reader.php",
  source: `<?php
function handler($context)
{
    $q = $context['request']->getQueryParams();
    switch ($q['kind'] ?? '') {
        case 'file':
            return file_get_contents(getenv($q['dir']) . '/' . $q['path']);
        case 'env':
            $value = getenv($q['name']);
            return $value === false ? 'unset' : $value;
        case 'relative':
            return file_get_contents($q['path']);
    }
    return 'unknown kind';
}
`,
};

const PACKAGES: PackageFixtures = {
  main: "index.php",
  shapes: [
    {
      what: "index.php's handler requiring a sibling file, without an entrypoint",
      files: {
        "index.php":
          "<?php\nrequire __DIR__ . '/helper.php';\n\nfunction handler()\n{\n    return word();\n}\n",
        "helper.php": "<?php\nfunction word()\n{\n    return 'sibling';\n}\n",
      },
      answer: "sibling",
    },
    {
      what: "Fission's file::function in a subdirectory, writing to the context's response",
      files: {
        "handlers/FileReader.php": [
          "<?php",
          "function execute($context)",
          "{",
          "    $response = $context['response'];",
          "    $response->getBody()->write(file_get_contents(__DIR__ . '/message.txt'));",
          "    $context['logger']->debug('File read: message.txt');",
          "}",
          "",
        ].join("\n"),
        "handlers/message.txt": "Hello, world",
      },
      entrypoint: "handlers/FileReader.php::execute",
      answer: "Hello, world",
    },
    {
      what: "dir/file.fn requiring another file of its directory",
      files: {
        "lib/app.php":
          "<?php\nrequire_once __DIR__ . '/util.php';\n\nfunction get($context)\n{\n    return shout('nested');\n}\n",
        "lib/util.php": "<?php\nfunction shout($s)\n{\n    return strtoupper($s);\n}\n",
      },
      entrypoint: "lib/app.get",
      answer: "NESTED",
    },
    {
      what: "Fission's functionName without '::': a script of the package, run whole",
      files: {
        "page.php": "<?php\nrequire __DIR__ . '/parts/word.php';\necho WORD;\n",
        "parts/word.php": "<?php\nconst WORD = 'script';\n",
      },
      entrypoint: "page.php",
      answer: "script",
    },
    {
      what: "a bare function name, in index.php",
      files: { "index.php": "<?php\nfunction other()\n{\n    return 'bare';\n}\n" },
      entrypoint: "other",
      answer: "bare",
    },
  ],
  loadFailure: {
    files: {
      "index.php":
        "<?php\nrequire __DIR__ . '/helper.php';\n\nfunction handler()\n{\n    return 1;\n}\n",
      "helper.php": "<?php\n$x = 1;\nthrow new RuntimeException('boom in helper');\n",
    },
    message: /^helper\.php:3: RuntimeException: boom in helper$/,
  },
  configReader: CONFIG_READER,
};

/** The contract's twice printer: PHP does not opt in to the call-marker suite (README), so this is
 * the abandoned-call check's way to see whether a call's function runs on (PHP kills the call's
 * process when its client leaves: no `two` line). */
const TWICE_PRINTER: Source = {
  filename: "twice.php",
  source: `<?php
function handler($context)
{
    $q = $context['request']->getQueryParams();
    if (($q['kind'] ?? '') === 'twice') {
        echo "one {$q['tag']}\n";
        usleep((int) $q['ms'] * 1000);
        echo "two {$q['tag']}\n";
    }
    return 'twice';
}
`,
};

export const phpRuntime: RuntimeUnderTest = {
  name: "php",
  start: (env, options) => startRuntime(SERVER, env, options),
  twicePrinter: TWICE_PRINTER,
  fixtures: {
    hello: HELLO,
    foreignFilename: "hello.py",
    loadFailures: [
      {
        what: "a syntax error in a script",
        filename: "hello.php",
        source: `<?php\necho "a"\necho "b";\n`,
        message: /^hello\.php:3: ParseError: syntax error, unexpected token "echo"/,
      },
      {
        what: "a throw at the top level of a handler file",
        filename: "hello.php",
        source: `<?php\nfunction handler() { return 1; }\nthrow new RuntimeException("boom");\n`,
        message: /^hello\.php:3: RuntimeException: boom$/,
      },
      {
        what: "a missing required file",
        filename: "hello.php",
        source: `<?php\n\nrequire 'left_pad.php';\nfunction handler() { return 1; }\n`,
        message: /^hello\.php:3: Error: Failed opening required 'left_pad\.php'/,
      },
      {
        what: "a missing entrypoint",
        filename: "hello.php",
        source: `<?php\nfunction handler($context) { return "x"; }\n`,
        entrypoint: "main",
        message: /^hello\.php: entrypoint "main" is not a function/,
      },
      {
        what: "file.fn naming another file",
        filename: "hello.php",
        source: `<?php\nfunction handler($context) { return "x"; }\n`,
        entrypoint: "other.handler",
        message: /^hello\.php: entrypoint "other\.handler" names other\.php/,
      },
    ],
    handlerShapes: [
      {
        what: "Fission's handler($context) writing to the response, returning nothing",
        filename: "hello.php",
        source: `<?php\nfunction handler($context)\n{\n    $context['response']->getBody()->write('written');\n}\n`,
        answer: "written",
      },
      {
        what: "a handler without parameters returning a string",
        filename: "hello.php",
        source: `<?php\nfunction handler()\n{\n    return "no-params";\n}\n`,
        answer: "no-params",
      },
      {
        what: "a function named by the entrypoint",
        filename: "hello.php",
        source: `<?php\nfunction main($context)\n{\n    return "named";\n}\n`,
        entrypoint: "main",
        answer: "named",
      },
      {
        what: "file.fn",
        filename: "hello.php",
        source: `<?php\nfunction handler($context)\n{\n    return "file-fn";\n}\n`,
        entrypoint: "hello.handler",
        answer: "file-fn",
      },
      {
        what: "Fission's file::function",
        filename: "hello.php",
        source: `<?php\nfunction run($context)\n{\n    return "fission-entry";\n}\n`,
        entrypoint: "hello.php::run",
        answer: "fission-entry",
      },
      {
        what: "a namespaced function",
        filename: "hello.php",
        source: `<?php\nnamespace App;\n\nfunction handler($context)\n{\n    return __NAMESPACE__;\n}\n`,
        entrypoint: "App\\handler",
        answer: "App",
      },
    ],
    kinds: KINDS,
    slow: (ms, answer) => ({
      filename: "slow.php",
      source: `<?php\nfunction handler()\n{\n    usleep(${ms * 1000});\n    return ${JSON.stringify(answer)};\n}\n`,
    }),
    tokenLeak: {
      filename: "leak.php",
      source: [
        "<?php",
        "function handler()",
        "{",
        "    $name = 'FIZZ_SPECIALIZE_TOKEN';",
        "    $seen = getenv($name) ?: ($_SERVER[$name] ?? $_ENV[$name] ?? getenv()[$name] ?? null);",
        "    return $seen === null ? 'absent' : $seen;",
        "}",
        "",
      ].join("\n"),
    },
    packages: PACKAGES,
  },
};
