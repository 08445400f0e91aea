/** Stage names are a type (src/pipeline/stage.ts): the product's stages can only have one of them. */
import { expect, test } from '@jest/globals'
import { STAGE_NAMES, type ProductStage, type StageName } from '../../../src/pipeline/stage.js'
import { testStage, verifyStage } from '../../../src/pipeline/stages.js'

test("a product stage's name is a StageName; a misspelt one does not compile", () => {
  const names: StageName[] = [testStage().name, verifyStage(() => 'R1').name]
  expect(names.every(n => STAGE_NAMES.includes(n))).toBe(true)
  // @ts-expect-error: not a stage name
  const typo: ProductStage = { name: 'verfy', run: async () => {} }
  expect(STAGE_NAMES).not.toContain(typo.name)
})
