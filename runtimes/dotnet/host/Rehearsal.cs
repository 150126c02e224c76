// The warm instance's rehearsal: Mono compiles each method the first time it runs, and the
// first specialize and call would pay for all of them (tens of milliseconds). So while generic,
// the runtime runs a specialize (archive form, secrets included) and a few calls through the very
// same code (Connection, HttpConnection, Specialize, Archive, Loader, Invoker), in memory, on a
// private throwaway instance whose "package" is a function built into the runtime. It never
// touches the real instance, the process environment or the working directory, and it stops early
// once the real specialize has come in.
using System;
using System.Collections.Generic;
using System.IO;
using System.IO.Compression;
using System.Threading;
using System.Text;
using Fission.DotNetCore.Api;

namespace Fizz.Dotnet
{
    /// <summary>The rehearsal's function: reads what a typical function reads.</summary>
    public class RehearsalFunction
    {
        public object Execute(FissionContext context)
        {
            var kind = context.Query.ContainsKey("kind") ? context.Query["kind"] : "";
            if (kind == "json") return new FissionResponse(201, new Dictionary<string, object> { { "body", context.Json() }, { "h", context.Headers.Count } });
            if (kind == "throw") throw new InvalidOperationException("rehearsed failure");
            if (kind == "bytes") return context.Body;
            return "Hello, " + context.Request.Method + " " + context.Arguments.Count + context.Request.BodyAsString() + "\n";
        }
    }

    internal static class Rehearsal
    {
        /// <summary>The in-memory part runs while the main thread opens the listening socket
        /// (Mono's first socket reads machine.config: a few hundred milliseconds); the calls then
        /// go over a socket once `listening` is set.</summary>
        public static void Run(Config real, Func<bool> stop, ManualResetEvent listening)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var scratch = Path.Combine(Path.GetTempPath(), "fizz-rehearsal-" + Guid.NewGuid().ToString("N").Substring(0, 12));
            try
            {
                Directory.CreateDirectory(scratch);
                Native.Chmod(scratch, Convert.ToInt32("700", 8));
                var config = new Config
                {
                    InstanceId = "rehearsal",
                    SpecializeToken = "rehearsal-token",
                    Workdir = scratch,
                    MaxBodyBytes = real.MaxBodyBytes,
                    MaxPackageBytes = real.MaxPackageBytes,
                    MaxPackageEntries = real.MaxPackageEntries,
                    Log = _ => { },
                    Load = (dir, spec) => Loader.Compile(Loader.Find(typeof(RehearsalFunction).Assembly, "Fizz.Dotnet.RehearsalFunction")),
                };
                var instance = new Instance(config);
                if (stop()) return;
                TouchProcessState();
                Exchange(instance, Request("GET", "/healthz", null, null));
                // The single-file form's checks (it then refuses: C# comes compiled).
                var jsonForm = "{\"function\":{\"namespace\":\"default\",\"name\":\"r\",\"revision\":1},\"filename\":\"r.cs\"," +
                    "\"code\":\"eA==\",\"digest\":\"sha256:" + new string('0', 64) + "\",\"env\":{\"A\":\"b\"}}";
                Exchange(instance, Request("POST", "/v2/specialize", Json("x-fizz-specialize-token: rehearsal-token"), jsonForm));
                if (stop()) return;
                var archive = TarGz(new Dictionary<string, string> { { "function.txt", "rehearsal" }, { "lib/data.txt", "data" } });
                var line = "{\"instanceId\":\"rehearsal\",\"function\":{\"namespace\":\"default\",\"name\":\"r\",\"revision\":1}," +
                    "\"concurrency\":2,\"env\":{\"A\":\"b\"},\"secrets\":{\"s\":{\"k\":\"dg==\"}},\"configmaps\":{\"c\":{\"k\":\"dg==\"}}," +
                    "\"digest\":\"" + Specialize.Sha256(archive) + "\"}\n";
                var body = new MemoryStream();
                var head = Encoding.UTF8.GetBytes(line);
                body.Write(head, 0, head.Length);
                body.Write(archive, 0, archive.Length);
                var specialize = Request("POST", "/v2/specialize",
                    "x-fizz-specialize-token: rehearsal-token\r\ncontent-type: " + Specialize.ArchiveContentType, body.ToArray());
                var answer = Exchange(instance, specialize);
                if (!answer.Contains("\"specialized\"")) throw new InvalidOperationException("rehearsal specialize: " + answer);
                listening.WaitOne();
                for (var round = 0; round < 3 && !stop(); round++)
                {
                    var calls = new MemoryStream();
                    Append(calls, Request("GET", "/?x=1&y=a+b", "x-fizz-instance: rehearsal\r\nx-request-id: r1", null));
                    Append(calls, Request("POST", "/p?kind=json", "x-fizz-instance: rehearsal\r\ncontent-type: application/json\r\nX-Fizz-Params-id: 1",
                        Encoding.UTF8.GetBytes("{\"a\":[1,2.5,true,null,\"s\\n\"]}")));
                    Append(calls, Chunked("POST", "/?kind=bytes", "x-fizz-instance: rehearsal", "hé", "llo"));
                    Append(calls, Request("GET", "/?kind=throw", "x-fizz-instance: rehearsal", null));
                    Append(calls, Request("GET", "/", "x-fizz-instance: other", null));
                    Append(calls, Request("GET", "/readyz", null, null));
                    Exchange(instance, calls.ToArray(), true);
                }
                // Collect the rehearsal's garbage now, not during the real specialize.
                GC.Collect();
                GC.WaitForPendingFinalizers();
                // Once the instance is specialized its stderr is the function's log: stay quiet there.
                if (!stop()) real.Log("[fizz] rehearsal done in " + sw.ElapsedMilliseconds + "ms");
            }
            catch (Exception e)
            {
                real.Log("[fizz] rehearsal failed (only the first calls are slower): " + e);
            }
            finally
            {
                try { Directory.Delete(scratch, true); } catch (Exception) { }
            }
        }

        private static string Json(string headers)
        {
            return headers + "\r\ncontent-type: application/json";
        }

        private static void Append(MemoryStream to, byte[] bytes)
        {
            to.Write(bytes, 0, bytes.Length);
        }

        private static byte[] Request(string method, string target, string headers, object body)
        {
            var bytes = body as byte[] ?? (body == null ? null : Encoding.UTF8.GetBytes((string)body));
            var sb = new StringBuilder();
            sb.Append(method).Append(' ').Append(target).Append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            if (headers != null) sb.Append(headers).Append("\r\n");
            if (bytes != null) sb.Append("Content-Length: ").Append(bytes.Length).Append("\r\n");
            sb.Append("\r\n");
            var ms = new MemoryStream();
            Append(ms, Encoding.UTF8.GetBytes(sb.ToString()));
            if (bytes != null) Append(ms, bytes);
            return ms.ToArray();
        }

        private static byte[] Chunked(string method, string target, string headers, params string[] chunks)
        {
            var sb = new StringBuilder();
            sb.Append(method).Append(' ').Append(target).Append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n").Append(headers)
                .Append("\r\nTransfer-Encoding: chunked\r\n\r\n");
            foreach (var c in chunks)
            {
                var b = Encoding.UTF8.GetByteCount(c);
                sb.Append(b.ToString("x")).Append("\r\n").Append(c).Append("\r\n");
            }
            sb.Append("0\r\n\r\n");
            return Encoding.UTF8.GetBytes(sb.ToString());
        }

        /// <summary>Serves one connection to its end; returns what it answered. Over a real
        /// loopback socket when it can (sockets have their own first-use costs), else in memory.</summary>
        private static string Exchange(Instance instance, byte[] input, bool overSocket = false)
        {
            var answer = overSocket ? OverSocket(instance, input) : null;
            if (answer != null) return answer;
            var stream = new DuplexStream(input);
            new Connection(instance, stream, null).Serve();
            return Encoding.UTF8.GetString(stream.Output.ToArray());
        }

        /// <summary>Over a socket pair: the same socket calls as a real connection, with no
        /// listener anyone else could reach.</summary>
        private static string OverSocket(Instance instance, byte[] input)
        {
            NativeSocketStream[] pair;
            try
            {
                pair = NativeSocketStream.Pair();
            }
            catch (IOException)
            {
                return null;
            }
            var client = pair[0];
            var server = pair[1];
            var output = new MemoryStream();
            var reader = new Thread(() =>
            {
                var buf = new byte[16 * 1024];
                try
                {
                    int n;
                    while ((n = client.Read(buf, 0, buf.Length)) > 0) output.Write(buf, 0, n);
                }
                catch (IOException)
                {
                    // closed
                }
            });
            reader.Start();
            client.Write(input, 0, input.Length);
            client.ShutdownSend();
            new Connection(instance, server, server).Serve();
            reader.Join(5000);
            client.Dispose();
            return Encoding.UTF8.GetString(output.ToArray());
        }

        /// <summary>What the real specialize does to the process, done to itself: the same
        /// working directory, and a variable set then removed.</summary>
        private static void TouchProcessState()
        {
            Directory.SetCurrentDirectory(Directory.GetCurrentDirectory());
            Environment.SetEnvironmentVariable("FIZZ_REHEARSAL", "1");
            Environment.SetEnvironmentVariable("FIZZ_REHEARSAL", null);
        }

        private static byte[] TarGz(Dictionary<string, string> files)
        {
            var tar = new MemoryStream();
            foreach (var f in files)
            {
                var data = Encoding.UTF8.GetBytes(f.Value);
                var h = new byte[512];
                Encoding.ASCII.GetBytes(f.Key, 0, f.Key.Length, h, 0);
                Encoding.ASCII.GetBytes("0000644\0", 0, 8, h, 100);
                Encoding.ASCII.GetBytes("0000000\0", 0, 8, h, 108);
                Encoding.ASCII.GetBytes("0000000\0", 0, 8, h, 116);
                Encoding.ASCII.GetBytes(Convert.ToString(data.Length, 8).PadLeft(11, '0') + "\0", 0, 12, h, 124);
                Encoding.ASCII.GetBytes("00000000000\0", 0, 12, h, 136);
                h[156] = (byte)'0';
                Encoding.ASCII.GetBytes("ustar\0" + "00", 0, 8, h, 257);
                for (var i = 148; i < 156; i++) h[i] = (byte)' ';
                var sum = 0;
                foreach (var b in h) sum += b;
                Encoding.ASCII.GetBytes(Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ", 0, 8, h, 148);
                tar.Write(h, 0, 512);
                tar.Write(data, 0, data.Length);
                tar.Write(new byte[(512 - data.Length % 512) % 512], 0, (512 - data.Length % 512) % 512);
            }
            tar.Write(new byte[1024], 0, 1024);
            var gz = new MemoryStream();
            using (var z = new GZipStream(gz, CompressionMode.Compress, true))
            {
                var t = tar.ToArray();
                z.Write(t, 0, t.Length);
            }
            return gz.ToArray();
        }

        /// <summary>Reads the prepared requests, collects the answers.</summary>
        private sealed class DuplexStream : Stream
        {
            private readonly MemoryStream _input;
            public readonly MemoryStream Output = new MemoryStream();

            public DuplexStream(byte[] input)
            {
                _input = new MemoryStream(input, false);
            }

            public override int Read(byte[] buffer, int offset, int count) { return _input.Read(buffer, offset, count); }
            public override void Write(byte[] buffer, int offset, int count) { Output.Write(buffer, offset, count); }
            public override bool CanRead { get { return true; } }
            public override bool CanSeek { get { return false; } }
            public override bool CanWrite { get { return true; } }
            public override long Length { get { throw new NotSupportedException(); } }
            public override long Position { get { throw new NotSupportedException(); } set { throw new NotSupportedException(); } }
            public override void Flush() { }
            public override long Seek(long offset, SeekOrigin origin) { throw new NotSupportedException(); }
            public override void SetLength(long value) { throw new NotSupportedException(); }
        }
    }
}
