import { Redis } from "ioredis";
import { z } from "zod";
export const probe = [Redis, z];
