using System;
using Fission.DotNetCore.Api;

public class FissionFunction
{
    private static string Explode()
    {
        throw new InvalidOperationException("boom from the function"); // FIZZ-E2E-THROW
    }

    public string Execute(FissionContext context)
    {
        return Explode();
    }
}
