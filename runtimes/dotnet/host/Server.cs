// One connection: its requests routed (probes, specialize, user traffic), answered in order,
// and closed safely; the transport it runs on.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.Sockets;
using System.Threading;
using Fission.DotNetCore.Api;

namespace Fizz.Dotnet
{
    /// <summary>A managed Socket as a transport (an IPv6 or named HOST).</summary>
    internal sealed class ManagedTransport : ITransport
    {
        private readonly Socket _socket;

        public ManagedTransport(Socket socket)
        {
            _socket = socket;
        }

        public void ShutdownSend()
        {
            _socket.Shutdown(SocketShutdown.Send);
        }

        public void SetReceiveTimeout(int ms)
        {
            _socket.ReceiveTimeout = ms;
        }

        public void Abort()
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
    }

    internal sealed class Connection
    {
        /// <summary>A body this small is read and dropped after an early answer, keeping the
        /// connection; a bigger one closes it.</summary>
        private const long DiscardLimit = 64 * 1024;
        private readonly Instance _instance;
        private readonly Stream _stream;
        private readonly ITransport _socket;
        public volatile bool Busy;

        public Connection(Instance instance, Stream stream, ITransport socket)
        {
            _instance = instance;
            _stream = stream;
            _socket = socket;
        }

        public void Abort()
        {
            try
            {
                if (_socket != null) _socket.Abort();
            }
            catch (Exception)
            {
                // already gone
            }
        }

        public void Serve()
        {
            _instance.Track(this);
            var http = new HttpConnection(_stream);
            try
            {
                for (;;)
                {
                    HttpRequest req;
                    try
                    {
                        req = http.ReadHead();
                    }
                    catch (HttpError e)
                    {
                        http.Write(HttpResponse.From(e), true);
                        break;
                    }
                    if (req == null) break;
                    var tr = Loader.Trace ? Stopwatch.StartNew() : null;
                    var accepted = _instance.EnterRequest(this);
                    HttpResponse res;
                    try
                    {
                        res = Route(req, http);
                    }
                    catch (HttpError e)
                    {
                        res = HttpResponse.From(e);
                    }
                    catch (IOException)
                    {
                        _instance.LeaveRequest(this);
                        break;
                    }
                    catch (Exception e)
                    {
                        _instance.Config.Log("[fizz] internal error: " + e);
                        res = HttpResponse.Error(500, "INTERNAL", "internal error in the runtime", null, true);
                        res.Close = true;
                    }
                    var close = res.Close || !req.KeepAlive || !accepted || _instance.Draining;
                    if (!close && !http.BodyComplete && !http.TryDiscardBody(DiscardLimit)) close = true;
                    try
                    {
                        http.Write(res, close);
                    }
                    finally
                    {
                        _instance.LeaveRequest(this);
                    }
                    if (tr != null) Console.Error.WriteLine("[fizz] trace: " + req.Method + " " + req.Target + " answered in " + tr.Elapsed.TotalMilliseconds);
                    if (close)
                    {
                        LingeringClose(http);
                        break;
                    }
                }
            }
            catch (Exception)
            {
                // the client went away
            }
            finally
            {
                _instance.Untrack(this);
                try { _stream.Close(); } catch (Exception) { }
            }
        }

        /// <summary>Closing with unread request bytes makes the kernel send a reset, which can
        /// destroy the answer before the client reads it: stop sending, then read briefly.</summary>
        private void LingeringClose(HttpConnection http)
        {
            if (_socket == null) return;
            try
            {
                _socket.ShutdownSend();
                _socket.SetReceiveTimeout(500);
                var scratch = new byte[8192];
                var total = 0;
                while (total < 1024 * 1024)
                {
                    var n = _stream.Read(scratch, 0, scratch.Length);
                    if (n <= 0) break;
                    total += n;
                }
            }
            catch (Exception)
            {
                // timed out or reset: either way done
            }
        }

        private HttpResponse Route(HttpRequest req, HttpConnection http)
        {
            var target = req.Header("x-fizz-instance");
            if (target == null)
            {
                var path = req.Path;
                if (path == "/healthz" || path == "/readyz") return Probe(req, path);
                if (path == "/v2/specialize")
                {
                    if (req.Method != "POST") return MethodNotAllowed("POST");
                    return Specialize.Handle(_instance, req, http);
                }
            }
            return Invoke(req, http, target);
        }

        private HttpResponse Probe(HttpRequest req, string path)
        {
            if (req.Method != "GET" && req.Method != "HEAD") return MethodNotAllowed("GET, HEAD");
            var state = _instance.State == Instance.Specializing ? Instance.Warm : _instance.State;
            if (path == "/healthz") return HttpResponse.Json(200, "{\"status\":\"ok\",\"state\":\"" + state + "\"}");
            var ready = _instance.State == Instance.Specialized && !_instance.Draining;
            return HttpResponse.Json(ready ? 200 : 503,
                "{\"status\":\"" + (ready ? "ready" : "not-ready") + "\",\"state\":\"" + state + "\"}");
        }

        private static HttpResponse MethodNotAllowed(string allow)
        {
            return HttpResponse.Error(405, "METHOD_NOT_ALLOWED", "use " + allow).Set("Allow", allow);
        }

        private HttpResponse Invoke(HttpRequest req, HttpConnection http, string target)
        {
            var id = _instance.Config.InstanceId;
            if (target != null && id != null && target != id)
                return HttpResponse.Error(421, "MISDIRECTED", "this is instance " + id + ", not " + target, null, true);
            var handler = _instance.Handler;
            if (handler == null || _instance.State != Instance.Specialized)
            {
                var why = _instance.State == Instance.Failed ? "the function failed to load" : "the instance is not specialized";
                return HttpResponse.Error(503, "NOT_SPECIALIZED", why, null, true);
            }
            var ticket = _instance.Limiter.Acquire();
            if (ticket == null)
            {
                var n = _instance.Concurrency;
                return HttpResponse.Error(429, "INSTANCE_BUSY", n + " calls running and " + n + " queued", null, true)
                    .Set("Retry-After", "1");
            }
            CallMarks.Owner marks = null;
            try
            {
                var body = http.ReadAll(_instance.Config.MaxBodyBytes);
                var context = Invoker.BuildContext(req, body, _instance.Function, _instance.PackagePath);
                marks = CallMarks.Enter(req.Header("x-request-id"));
                object result;
                try
                {
                    result = handler(context);
                }
                catch (InvalidBodyException e)
                {
                    return HttpResponse.Error(400, "INVALID_BODY", e.Message);
                }
                catch (Exception e)
                {
                    var message = Loader.Describe(e);
                    _instance.Config.Log("[fizz] function error (request " + context.RequestId + "): " + e);
                    return HttpResponse.Error(500, "FUNCTION_ERROR", message);
                }
                try
                {
                    return Invoker.Answer(result);
                }
                catch (ResultError e)
                {
                    _instance.Config.Log("[fizz] bad return value (request " + context.RequestId + "): " + e.Message);
                    return HttpResponse.Error(500, "FUNCTION_ERROR", e.Message);
                }
            }
            finally
            {
                CallMarks.Leave(marks);
                // Only now, the function having returned: a call whose client went away (the
                // gateway's timeout) keeps its slot while its function still runs on this
                // instance, so the next calls never run beside it past `concurrency`.
                ticket.Release();
            }
        }
    }
}
