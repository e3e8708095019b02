"""Recurrent layers (RNN, LSTM, LSTMUnit) as torch operations."""
