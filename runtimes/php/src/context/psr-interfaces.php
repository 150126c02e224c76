<?php
// PSR-7 (psr/http-message 1.0) and PSR-3 (psr/log 1.1) interfaces, declared only when nothing else
// provides them (see loadContext in psr7.php): typed user code (`ResponseInterface $response`)
// then works without Composer. The runtime's classes fit these and the 2.0/3.0 versions alike.
declare(strict_types=1);

namespace Psr\Http\Message;

if (!interface_exists(MessageInterface::class, true)) {
    interface MessageInterface
    {
        public function getProtocolVersion();
        public function withProtocolVersion($version);
        public function getHeaders();
        public function hasHeader($name);
        public function getHeader($name);
        public function getHeaderLine($name);
        public function withHeader($name, $value);
        public function withAddedHeader($name, $value);
        public function withoutHeader($name);
        public function getBody();
        public function withBody(StreamInterface $body);
    }

    interface RequestInterface extends MessageInterface
    {
        public function getRequestTarget();
        public function withRequestTarget($requestTarget);
        public function getMethod();
        public function withMethod($method);
        public function getUri();
        public function withUri(UriInterface $uri, $preserveHost = false);
    }

    interface ServerRequestInterface extends RequestInterface
    {
        public function getServerParams();
        public function getCookieParams();
        public function withCookieParams(array $cookies);
        public function getQueryParams();
        public function withQueryParams(array $query);
        public function getUploadedFiles();
        public function withUploadedFiles(array $uploadedFiles);
        public function getParsedBody();
        public function withParsedBody($data);
        public function getAttributes();
        public function getAttribute($name, $default = null);
        public function withAttribute($name, $value);
        public function withoutAttribute($name);
    }

    interface ResponseInterface extends MessageInterface
    {
        public function getStatusCode();
        public function withStatus($code, $reasonPhrase = '');
        public function getReasonPhrase();
    }

    interface StreamInterface
    {
        public function __toString();
        public function close();
        public function detach();
        public function getSize();
        public function tell();
        public function eof();
        public function isSeekable();
        public function seek($offset, $whence = SEEK_SET);
        public function rewind();
        public function isWritable();
        public function write($string);
        public function isReadable();
        public function read($length);
        public function getContents();
        public function getMetadata($key = null);
    }

    interface UriInterface
    {
        public function getScheme();
        public function getAuthority();
        public function getUserInfo();
        public function getHost();
        public function getPort();
        public function getPath();
        public function getQuery();
        public function getFragment();
        public function withScheme($scheme);
        public function withUserInfo($user, $password = null);
        public function withHost($host);
        public function withPort($port);
        public function withPath($path);
        public function withQuery($query);
        public function withFragment($fragment);
        public function __toString();
    }
}

namespace Psr\Log;

if (!interface_exists(LoggerInterface::class, true)) {
    interface LoggerInterface
    {
        public function emergency($message, array $context = array());
        public function alert($message, array $context = array());
        public function critical($message, array $context = array());
        public function error($message, array $context = array());
        public function warning($message, array $context = array());
        public function notice($message, array $context = array());
        public function info($message, array $context = array());
        public function debug($message, array $context = array());
        public function log($level, $message, array $context = array());
    }
}

if (!class_exists(LogLevel::class, true)) {
    class LogLevel
    {
        const EMERGENCY = 'emergency';
        const ALERT = 'alert';
        const CRITICAL = 'critical';
        const ERROR = 'error';
        const WARNING = 'warning';
        const NOTICE = 'notice';
        const INFO = 'info';
        const DEBUG = 'debug';
    }
}

if (!class_exists(InvalidArgumentException::class, true)) {
    class InvalidArgumentException extends \InvalidArgumentException
    {
    }
}
