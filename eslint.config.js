import neostandard from 'neostandard'

export default [
  ...neostandard({
    ts: true,
    ignores: ['dist/**', 'node_modules/**', 'models/**', 'coverage/**']
  }),
  {
    rules: {
      // `void promise` marks a deliberate fire-and-forget.
      'no-void': ['error', { allowAsStatement: true }],
      // Loops on flags that callbacks flip (stop signals, load loops) are not endless.
      'no-unmodified-loop-condition': 'off',
      // A TypeScript type and a value may share a name.
      '@typescript-eslint/no-redeclare': 'off'
    }
  }
]
