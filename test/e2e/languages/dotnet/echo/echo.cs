using Fission.DotNetCore.Api;

// Answers the POSTed JSON body back as JSON (a parsed object is answered as JSON).
public class FissionFunction
{
    public object Execute(FissionContext context)
    {
        return context.Json();
    }
}
