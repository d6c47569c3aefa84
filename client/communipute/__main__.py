from communipute.cli import main

raise SystemExit(main())
