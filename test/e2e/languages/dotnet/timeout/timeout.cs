using System.Threading;
using Fission.DotNetCore.Api;

// ?slow sleeps past any small function timeout; otherwise it answers at once.
public class FissionFunction
{
    public string Execute(FissionContext context)
    {
        if (context.Arguments.ContainsKey("slow"))
            Thread.Sleep(30000);
        return "awake";
    }
}
