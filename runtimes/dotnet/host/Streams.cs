// Streams the archive form reads through: the request body, the gzip magic put back in front of
// it, and the hash of every byte after the JSON line.
using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;

namespace Fizz.Dotnet
{
    /// <summary>The current request's body as a read-only Stream (for the archive reader).</summary>
    internal sealed class BodyStream : Stream
    {
        private readonly HttpConnection _conn;
        public BodyStream(HttpConnection conn) { _conn = conn; }
        public override int Read(byte[] buffer, int offset, int count) { return _conn.ReadBody(buffer, offset, count); }
        public override bool CanRead { get { return true; } }
        public override bool CanSeek { get { return false; } }
        public override bool CanWrite { get { return false; } }
        public override long Length { get { throw new NotSupportedException(); } }
        public override long Position { get { throw new NotSupportedException(); } set { throw new NotSupportedException(); } }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) { throw new NotSupportedException(); }
        public override void SetLength(long value) { throw new NotSupportedException(); }
        public override void Write(byte[] buffer, int offset, int count) { throw new NotSupportedException(); }
    }

    /// <summary>Bytes already read (the gzip magic), then the rest of a stream.</summary>
    internal sealed class PrefixedStream : Stream
    {
        private readonly byte[] _prefix;
        private int _at;
        private readonly Stream _rest;

        public PrefixedStream(byte[] prefix, Stream rest)
        {
            _prefix = prefix;
            _rest = rest;
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_at < _prefix.Length)
            {
                var n = Math.Min(count, _prefix.Length - _at);
                Buffer.BlockCopy(_prefix, _at, buffer, offset, n);
                _at += n;
                return n;
            }
            return _rest.Read(buffer, offset, count);
        }

        public override bool CanRead { get { return true; } }
        public override bool CanSeek { get { return false; } }
        public override bool CanWrite { get { return false; } }
        public override long Length { get { throw new NotSupportedException(); } }
        public override long Position { get { throw new NotSupportedException(); } set { throw new NotSupportedException(); } }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) { throw new NotSupportedException(); }
        public override void SetLength(long value) { throw new NotSupportedException(); }
        public override void Write(byte[] buffer, int offset, int count) { throw new NotSupportedException(); }
    }

    /// <summary>Counts and hashes every byte read through it; 413 past the byte cap.</summary>
    internal sealed class HashingStream : Stream
    {
        private readonly Stream _inner;
        private readonly long _max;
        public readonly SHA256 Hash = new SHA256Managed();
        public long Count;

        public HashingStream(Stream inner, long max)
        {
            _inner = inner;
            _max = max;
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = _inner.Read(buffer, offset, count);
            if (n <= 0) return 0;
            Count += n;
            if (Count > _max)
                throw new HttpError(413, "PAYLOAD_TOO_LARGE", "archive exceeds " + _max + " bytes", true);
            Hash.TransformBlock(buffer, offset, n, null, 0);
            return n;
        }

        public void Drain()
        {
            var scratch = new byte[16 * 1024];
            while (Read(scratch, 0, scratch.Length) > 0) { }
        }

        public string Digest()
        {
            Hash.TransformFinalBlock(new byte[0], 0, 0);
            var sb = new StringBuilder("sha256:");
            foreach (var b in Hash.Hash) sb.Append(b.ToString("x2"));
            return sb.ToString();
        }

        public override bool CanRead { get { return true; } }
        public override bool CanSeek { get { return false; } }
        public override bool CanWrite { get { return false; } }
        public override long Length { get { throw new NotSupportedException(); } }
        public override long Position { get { throw new NotSupportedException(); } set { throw new NotSupportedException(); } }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) { throw new NotSupportedException(); }
        public override void SetLength(long value) { throw new NotSupportedException(); }
        public override void Write(byte[] buffer, int offset, int count) { throw new NotSupportedException(); }
    }
}
