/**
 * Tests that need POSIX (file modes, symlinks without privileges, /bin/sh): skipped on a Windows runner, each
 * with the reason in a comment where it is used. Whole files of host-side sh scripts are left out on Windows
 * in jest.config.js instead.
 */
import { test } from '@jest/globals'

export const posixOnly = process.platform === 'win32' ? test.skip : test
