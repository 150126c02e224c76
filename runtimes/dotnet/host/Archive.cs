// The archive form's tar.gz, streamed through GZipStream and a tar reader of our own into
// <workdir>/fn while every byte is hashed (docs/runtime-contract.md). Only regular files and
// directories are written; no link is ever created, so a name without `..` that is not absolute
// cannot leave the target directory. Files are created exclusively, so an entry cannot overwrite
// another. After a refusal the rest of the body is still read and hashed, so a tampered archive
// is reported as DIGEST_MISMATCH rather than as whatever its damage looks like.
using System;
using System.IO;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;

namespace Fizz.Dotnet
{
    internal sealed class ArchiveUnsafe : Exception
    {
        public ArchiveUnsafe(string entry, string rule)
            : base(entry == null ? "archive: " + rule : "entry " + Quote(entry) + ": " + rule) { }

        private static string Quote(string s)
        {
            var sb = new StringBuilder();
            Fission.DotNetCore.Api.FizzJson.WriteString(sb, s);
            return sb.ToString();
        }
    }

    internal sealed class ArchiveResult
    {
        public string Digest;
        /// <summary>An ArchiveUnsafe, or another exception when writing failed (a full disk).</summary>
        public Exception Refusal;
        public int Files;
    }

    internal static class Archive
    {
        private const int MaxNameLength = 4096;
        private const int MaxExtendedHeader = 1024 * 1024;

        /// <summary>Extracts `body` (positioned after the JSON line) into `dir`, which this creates
        /// (0700; IOException "exists" when it is there already). Throws HttpError when the body is
        /// over the cap or cut short; otherwise the caller decides from the digest and refusal,
        /// and removes `dir` unless it loads it.</summary>
        public static ArchiveResult Receive(Stream body, string dir, long maxBytes, long maxEntries)
        {
            if (!Native.MkdirNew(dir, Convert.ToInt32("700", 8))) throw new DirectoryExists();
            var hashing = new HashingStream(body, maxBytes);
            var result = new ArchiveResult();
            var first = new byte[2];
            var got = 0;
            while (got < 2)
            {
                var n = hashing.Read(first, got, 2 - got);
                if (n == 0) break;
                got += n;
            }
            if (got == 0) result.Refusal = new ArchiveUnsafe(null, "empty");
            else if (got < 2 || first[0] != 0x1f || first[1] != 0x8b) result.Refusal = new ArchiveUnsafe(null, "not a gzip'd tar");
            else
            {
                try
                {
                    using (var gz = new GZipStream(new PrefixedStream(first, hashing), CompressionMode.Decompress, true))
                    {
                        result.Files = Extract(gz, dir, maxBytes, maxEntries);
                    }
                }
                catch (HttpError)
                {
                    throw;
                }
                catch (ArchiveUnsafe e)
                {
                    result.Refusal = e;
                }
                catch (InvalidDataException e)
                {
                    result.Refusal = new ArchiveUnsafe(null, "malformed: " + e.Message);
                }
                catch (Exception e)
                {
                    result.Refusal = e;
                }
            }
            hashing.Drain();
            result.Digest = hashing.Digest();
            return result;
        }

        internal sealed class DirectoryExists : Exception { }

        private static int Extract(Stream tar, string root, long maxBytes, long maxEntries)
        {
            var header = new byte[512];
            var entries = 0L;
            var bytes = 0L;
            var files = 0;
            string paxPath = null;
            long paxSize = -1;
            string longName = null;
            for (;;)
            {
                if (!ReadFull(tar, header, 512))
                    throw new ArchiveUnsafe(null, "malformed: truncated archive");
                if (IsZero(header)) return files; // end of archive; the rest is padding
                if (!ChecksumOk(header)) throw new ArchiveUnsafe(null, "malformed: bad header checksum");
                var type = (char)header[156];
                var size = Octal(header, 124, 12);
                if (size < 0) throw new ArchiveUnsafe(null, "malformed: bad size field");
                if (type == 'x' || type == 'g' || type == 'L' || type == 'K')
                {
                    if (size > MaxExtendedHeader) throw new ArchiveUnsafe(null, "extended header too large");
                    var data = new byte[size];
                    if (!ReadFull(tar, data, (int)size)) throw new ArchiveUnsafe(null, "malformed: truncated archive");
                    Skip(tar, Pad(size));
                    if (type == 'x')
                    {
                        string p;
                        long s;
                        ParsePax(data, out p, out s);
                        if (p != null) paxPath = p;
                        if (s >= 0) paxSize = s;
                    }
                    else if (type == 'L')
                    {
                        longName = Encoding.UTF8.GetString(data).TrimEnd('\0');
                    }
                    continue; // 'g' (global) and 'K' (long link name) change nothing we write
                }
                var name = paxPath ?? longName ?? HeaderName(header);
                if (paxSize >= 0) size = paxSize;
                paxPath = null;
                longName = null;
                paxSize = -1;

                if (++entries > maxEntries) throw new ArchiveUnsafe(name, "more than " + maxEntries + " entries");
                var segments = Segments(name);
                if (type == '5')
                {
                    if (segments.Length > 0) MakeDirs(root, segments, segments.Length, name);
                    Skip(tar, size + Pad(size));
                    continue;
                }
                if (type == '1' || type == '2') throw new ArchiveUnsafe(name, "links are not allowed");
                if (type == '3' || type == '4' || type == '6') throw new ArchiveUnsafe(name, "device file or FIFO");
                if (type != '0' && type != '\0' && type != '7') throw new ArchiveUnsafe(name, "unsupported entry type " + type);
                if (segments.Length == 0) throw new ArchiveUnsafe(name, "a file without a name");
                bytes += size;
                if (bytes > maxBytes) throw new ArchiveUnsafe(name, "files total more than " + maxBytes + " bytes");
                if (segments.Length > 1) MakeDirs(root, segments, segments.Length - 1, name);
                var path = Path.Combine(root, string.Join("/", segments));
                if (File.Exists(path) || Directory.Exists(path)) throw new ArchiveUnsafe(name, "duplicate entry");
                var mode = Octal(header, 100, 8);
                // Owner only: the instance's own uid is the only reader. Executables stay executable.
                var fileMode = (mode & 64) != 0 ? Convert.ToInt32("700", 8) : Convert.ToInt32("600", 8);
                using (var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write))
                {
                    Native.Chmod(path, fileMode);
                    Copy(tar, output, size);
                }
                files++;
                Skip(tar, Pad(size));
            }
        }

        /// <summary>The entry's name as path segments under the root (empty for "./"), or refused.
        /// Any `..` is refused, even one that would stay inside: no real archive needs it.</summary>
        private static string[] Segments(string name)
        {
            if (name.Length == 0 || name.IndexOf('\0') >= 0) throw new ArchiveUnsafe(name, "invalid name");
            if (name.Length > MaxNameLength) throw new ArchiveUnsafe(name, "name too long");
            if (name.IndexOf('\\') >= 0) throw new ArchiveUnsafe(name, "backslash in path");
            if (name.StartsWith("/")) throw new ArchiveUnsafe(name, "absolute path");
            var parts = name.Split('/');
            var kept = new System.Collections.Generic.List<string>();
            foreach (var p in parts)
            {
                if (p == "" || p == ".") continue;
                if (p == "..") throw new ArchiveUnsafe(name, "path escapes the archive root");
                kept.Add(p);
            }
            return kept.ToArray();
        }

        private static void MakeDirs(string root, string[] segments, int count, string name)
        {
            var path = root;
            for (var i = 0; i < count; i++)
            {
                path = path + "/" + segments[i];
                if (Directory.Exists(path)) continue;
                if (File.Exists(path)) throw new ArchiveUnsafe(name, "path passes through a file");
                Directory.CreateDirectory(path);
                Native.Chmod(path, Convert.ToInt32("700", 8));
            }
        }

        private static string HeaderName(byte[] h)
        {
            var name = CString(h, 0, 100);
            var magic = Encoding.ASCII.GetString(h, 257, 5);
            if (magic == "ustar")
            {
                var prefix = CString(h, 345, 155);
                if (prefix.Length > 0) name = prefix + "/" + name;
            }
            return name;
        }

        private static string CString(byte[] h, int offset, int length)
        {
            var end = offset;
            while (end < offset + length && h[end] != 0) end++;
            return Encoding.UTF8.GetString(h, offset, end - offset);
        }

        /// <summary>An octal field (or GNU base-256 for big sizes); -1 when malformed.</summary>
        private static long Octal(byte[] h, int offset, int length)
        {
            if ((h[offset] & 0x80) != 0)
            {
                long v = h[offset] & 0x7f;
                for (var i = 1; i < length; i++)
                {
                    if (v > (long.MaxValue >> 8)) return -1;
                    v = (v << 8) | h[offset + i];
                }
                return v;
            }
            long value = 0;
            var seen = false;
            for (var i = offset; i < offset + length; i++)
            {
                var c = h[i];
                if (c == 0) break;
                if (c == ' ') { if (seen) break; continue; }
                if (c < '0' || c > '7') return -1;
                seen = true;
                value = value * 8 + (c - '0');
                if (value > (1L << 40)) return -1;
            }
            return value;
        }

        private static bool ChecksumOk(byte[] h)
        {
            var expected = Octal(h, 148, 8);
            long sum = 0;
            for (var i = 0; i < 512; i++) sum += (i >= 148 && i < 156) ? 32 : h[i];
            return expected == sum;
        }

        private static void ParsePax(byte[] data, out string path, out long size)
        {
            path = null;
            size = -1;
            var pos = 0;
            while (pos < data.Length)
            {
                var space = Array.IndexOf(data, (byte)' ', pos);
                if (space < 0) throw new ArchiveUnsafe(null, "malformed pax header");
                int len;
                if (!int.TryParse(Encoding.ASCII.GetString(data, pos, space - pos), out len) || len <= 0 || pos + len > data.Length)
                    throw new ArchiveUnsafe(null, "malformed pax header");
                var record = Encoding.UTF8.GetString(data, space + 1, pos + len - space - 2); // drops "\n"
                var eq = record.IndexOf('=');
                if (eq > 0)
                {
                    var key = record.Substring(0, eq);
                    var value = record.Substring(eq + 1);
                    if (key == "path") path = value;
                    else if (key == "size")
                    {
                        long s;
                        if (!long.TryParse(value, out s) || s < 0) throw new ArchiveUnsafe(null, "malformed pax size");
                        size = s;
                    }
                    else if (key.StartsWith("GNU.sparse")) throw new ArchiveUnsafe(path, "sparse files are not supported");
                }
                pos += len;
            }
        }

        private static long Pad(long size)
        {
            return (512 - size % 512) % 512;
        }

        private static bool IsZero(byte[] b)
        {
            foreach (var x in b) if (x != 0) return false;
            return true;
        }

        private static bool ReadFull(Stream s, byte[] buf, int count)
        {
            var got = 0;
            while (got < count)
            {
                var n = s.Read(buf, got, count - got);
                if (n <= 0) return false;
                got += n;
            }
            return true;
        }

        private static void Skip(Stream s, long count)
        {
            var buf = new byte[8192];
            while (count > 0)
            {
                var n = s.Read(buf, 0, (int)Math.Min(buf.Length, count));
                if (n <= 0) throw new ArchiveUnsafe(null, "malformed: truncated archive");
                count -= n;
            }
        }

        private static void Copy(Stream s, Stream output, long count)
        {
            var buf = new byte[16 * 1024];
            while (count > 0)
            {
                var n = s.Read(buf, 0, (int)Math.Min(buf.Length, count));
                if (n <= 0) throw new ArchiveUnsafe(null, "malformed: truncated archive");
                output.Write(buf, 0, n);
                count -= n;
            }
        }
    }
}
