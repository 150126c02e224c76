import { z } from "zod";
import { ErrorCodes, type ErrorCode } from "./errors";

/** The schema of an error as it travels in messages (see FizzError.toWire). */
export const WireErrorSchema = z.object({
  code: z.enum(Object.keys(ErrorCodes) as [ErrorCode, ...ErrorCode[]]),
  message: z.string(),
  field: z.string().optional(),
  retryable: z.boolean(),
});
